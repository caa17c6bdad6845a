"""`miracle evaluate`: generate for a test file, score with the paper's metrics, write tables like tables 1 and 4.

    miracle evaluate --model runs/mine --without-ebm --ablation "w/o L_C=runs/no_lc" --output-dir runs/eval

Test rows with `"tags"` (multi-attribute dialogues) give each context its target personality; other rows are
generated for all combinations of the attributes (2^N). Scorers (one text classifier per attribute and the NLI
coherence classifier) are loaded from `--scorers`, or trained there first from the packaged corpus.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from ..corpus import CORPUS_DIR, read_jsonl
from ..evaluation import metrics
from ..evaluation.scorers import SequenceScorer, context_text, train_attribute_scorer, train_nli_scorer
from ..sampling import all_personalities
from ..training.data import dialogue_examples
from .arguments import split_pair

COLUMNS = ["Avg.", "BLEU", "Rouge", "NLI", "PPL", "Distinct", "sBLEU"]


def evaluation_examples(test_files: str | list[str], attributes: dict[str, list[str]], max_examples: int | None = None) -> list[dict]:
    """One example per assistant turn: messages, reference response, target personality; interleaved by personality."""
    combos = all_personalities(attributes)
    by_personality: dict[tuple, list[dict]] = {}
    for test_file in [test_files] if isinstance(test_files, (str, Path)) else test_files:
        for row in read_jsonl(test_file):
            tags = row.get("tags")
            targets = [{a: attributes[a][tags[a]] for a in attributes}] if tags else combos
            for k, turn in enumerate(dialogue_examples({**row, "aspect_id": -1}, attribute_id=-1)):
                for personality in targets:
                    by_personality.setdefault(tuple(personality.values()), []).append({
                        "messages": turn["messages"], "reference": turn["response"], "personality": personality,
                        "context": context_text(row["input"], row["output"], k),
                    })
    queues = list(by_personality.values())
    interleaved = [q[i] for i in range(max(map(len, queues))) for q in queues if i < len(q)]
    return interleaved[:max_examples]


def generate_responses(model, processor, examples, use_ebm=True, batch_size=16, max_new_tokens=40, seed=0) -> list[str]:
    """Greedy responses (the paper's decoding) for every example, in batches."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    responses = []
    for start in tqdm(range(0, len(examples), batch_size), desc="Generating", leave=False):
        batch = examples[start:start + batch_size]
        inputs = processor([e["messages"] for e in batch]).to(model.device)
        output = model.generate(**inputs, personality=[e["personality"] for e in batch], use_ebm=use_ebm,
                                max_new_tokens=max_new_tokens, do_sample=False)
        responses += processor.batch_decode(output, prompt_length=inputs["input_ids"].shape[1])
    return responses


def ensure_scorers(scorer_dir: str, attributes: dict[str, list[str]], backbone: str | None = None, epochs: float = 3.0,
                   data_dir: str | Path = CORPUS_DIR) -> dict:
    """Scorer paths per attribute and for NLI; missing ones are trained first from `data_dir` (default: the packaged
    corpus): `text_<attribute>.{train,validation}.jsonl` for attributes, dialogue files for NLI."""
    data_dir = Path(data_dir)
    paths = {}
    for attribute, aspects in attributes.items():
        path = os.path.join(scorer_dir, attribute)
        if not os.path.isfile(os.path.join(path, "config.json")):
            train, validation = data_dir / f"text_{attribute}.train.jsonl", data_dir / f"text_{attribute}.validation.jsonl"
            if not train.is_file():
                raise FileNotFoundError(f"No scorer for {attribute!r} in {scorer_dir} and no {train} to train one.")
            result = train_attribute_scorer(str(train), str(validation), aspects, path, backbone=backbone, epochs=epochs)
            print(f"Trained the {attribute} scorer: validation accuracy {result.validation_accuracy:.1f}%")
        paths[attribute] = path
    nli = os.path.join(scorer_dir, "nli")
    if not os.path.isfile(os.path.join(nli, "config.json")):
        split = "heldout" if data_dir == CORPUS_DIR else "train"  # the corpus keeps dialogues apart for its scorers
        train = [str(p) for p in sorted(data_dir.glob(f"dialogue_*.{split}.jsonl")) if "multi" not in p.name]
        validation = [str(p) for p in sorted(data_dir.glob("dialogue_*.validation.jsonl"))]
        if not train or not validation:
            raise FileNotFoundError(f"No NLI scorer in {scorer_dir} and no dialogue_*.{split}/validation files in {data_dir}.")
        result = train_nli_scorer(train, validation, nli, backbone=backbone, epochs=epochs)
        print(f"Trained the NLI coherence scorer: validation accuracy {result.validation_accuracy:.1f}%")
    paths["nli"] = nli
    return paths


def score(examples, responses, scorers: dict, attributes, fluency_model, fluency_tokenizer) -> dict:
    """Every metric of table 1 for one system's responses."""
    row = {}
    targets = {a: [attributes[a].index(e["personality"][a]) for e in examples] for a in attributes}
    predictions = {a: scorers[a].predict(responses) for a in attributes}
    personalization = metrics.personalization_scores(predictions, targets)
    row["Avg."] = personalization["avg"]
    row.update({a: personalization[a] for a in attributes})
    references = [e["reference"] for e in examples]
    safe = [r if r.strip() else "." for r in responses]  # an empty generation still counts (scores ~0)
    row["BLEU"] = metrics.bleu(safe, references)["bleu"]
    row["Rouge"] = metrics.rouge(safe, references)["rouge"]
    row["NLI"] = metrics.nli_coherence(scorers["nli"].predict([e["context"] for e in examples], safe))
    row["PPL"] = metrics.perplexity(safe, fluency_model, fluency_tokenizer)["perplexity"]
    row["Distinct"] = metrics.distinct(safe)["distinct"]
    row["sBLEU"] = metrics.self_bleu(safe, sample_size=min(150, len(safe)))
    return row


def markdown_table(rows: dict[str, dict], attributes) -> str:
    columns = ["Avg."] + list(attributes) + COLUMNS[1:]
    lines = ["| system | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.2f}" for c in columns) + " |")
    return "\n".join(lines)


def run_evaluation(args) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .. import load_model_and_processor

    model, processor = load_model_and_processor(args.model)
    attributes = model.config.attributes
    examples = evaluation_examples(args.test_file, attributes, args.max_examples)
    scorer_paths = ensure_scorers(args.scorers, attributes, args.scorer_backbone, args.scorer_epochs, args.scorer_data)
    scorers = {name: SequenceScorer(path) for name, path in scorer_paths.items()}
    if args.fluency_lm is None:
        from ..backbones import smollm2_folder

        args.fluency_lm = str(smollm2_folder())
    fluency_model = AutoModelForCausalLM.from_pretrained(args.fluency_lm).eval()
    fluency_tokenizer = AutoTokenizer.from_pretrained(args.fluency_lm)

    systems = [("MIRACLE", model, processor, True)]
    if args.without_ebm:
        systems.append(("w/o EBM", model, processor, False))
    for spec in args.ablation:
        name, path = split_pair(spec, "--ablation", "name=path")
        ablated, ablated_processor = load_model_and_processor(path)
        systems.append((name, ablated, ablated_processor, True))
    rows, samples, started = {}, {}, time.time()
    for name, system, system_processor, use_ebm in systems:
        responses = generate_responses(system, system_processor, examples, use_ebm, args.batch_size, args.max_new_tokens, args.seed)
        rows[name] = score(examples, responses, scorers, attributes, fluency_model, fluency_tokenizer)
        samples[name] = [{"context": e["context"], "personality": e["personality"], "response": r}
                         for e, r in list(zip(examples, responses))[:16]]
    settings = {
        "model": args.model or "default", "test_file": args.test_file, "examples": len(examples),
        "max_new_tokens": args.max_new_tokens, "decoding": "greedy", "seed": args.seed, "scorers": scorer_paths,
        "fluency_lm": args.fluency_lm, "minutes": round((time.time() - started) / 60, 1),
    }
    os.makedirs(args.output_dir, exist_ok=True)
    table = markdown_table(rows, attributes)
    Path(args.output_dir, "results.md").write_text(
        table + "\n\nSettings: " + json.dumps(settings) + "\n", encoding="utf-8")
    Path(args.output_dir, "results.json").write_text(
        json.dumps({"table": rows, "settings": settings, "samples": samples}, indent=2), encoding="utf-8")
    print(table)
    print(f"Wrote {args.output_dir}/results.md and results.json")
    return {"table": rows, "settings": settings}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="miracle evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="Saved MIRACLE model (default: the packaged default model).")
    parser.add_argument("--test-file", nargs="+", default=[str(CORPUS_DIR / "dialogue_multi.test.jsonl")],
                        help="Test dialogue file(s); rows with 'tags' give target personalities (default: the corpus's multi-attribute test set).")
    parser.add_argument("--max-examples", type=int, default=None)
    parser.add_argument("--without-ebm", action="store_true", help="Add the 'w/o EBM' row (no latent sampling).")
    parser.add_argument("--ablation", action="append", default=[], help="'name=path' of an ablated model (repeatable).")
    parser.add_argument("--scorers", default="runs/scorers", help="Folder of scorer models (trained there if missing).")
    parser.add_argument("--scorer-backbone", default=None, help="Backbone for scorers trained here (default: packaged MiniLM).")
    parser.add_argument("--scorer-epochs", type=float, default=3.0)
    parser.add_argument("--scorer-data", default=str(CORPUS_DIR),
                        help="Folder with text_<attribute>.{train,validation}.jsonl and dialogue files to train missing scorers.")
    parser.add_argument("--fluency-lm", default=None, help="Causal LM for perplexity (default: packaged SmolLM2; paper: gpt2-xl).")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default="runs/evaluation")
    return parser


def main(argv: list[str] | None = None) -> int:
    run_evaluation(build_parser().parse_args(argv))
    return 0
