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

import sys

from ..corpus import CORPUS_DIR
from .arguments import split_pair
from .model_path import resolve_model


def run_evaluation(args) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .. import load_model_and_processor
    from ..evaluation.scorers import SequenceScorer
    from ..evaluation.suite import (ensure_scorers, evaluation_examples, generate_responses, markdown_table,
                                    missing_scorer_data, score, scorers_to_train)

    for path in args.test_file:
        if not Path(path).is_file():
            raise FileNotFoundError(f"--test-file {path}: no such file.")
    model_path = resolve_model(args.model)
    for spec in args.ablation:
        resolve_model(split_pair(spec, "--ablation", "name=path")[1], "--ablation")
    model, processor = load_model_and_processor(model_path)
    attributes = model.config.attributes
    missing = missing_scorer_data(args.scorers, attributes, args.scorer_data)
    if missing:
        raise FileNotFoundError("miracle evaluate scores each of the model's attributes with a text classifier; "
                                + "; ".join(missing) + ".")
    examples = evaluation_examples(args.test_file, attributes, args.max_examples)
    to_train = scorers_to_train(args.scorers, attributes)
    if to_train:
        print(f"First use of {args.scorers}: training the scorers {', '.join(to_train)} before evaluating. This runs "
              "once (they are saved there and reused) and takes minutes on a CPU, more on a busy one; each shows a progress "
              "bar with its time left.",
              file=sys.stderr, flush=True)
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
        ablated, ablated_processor = load_model_and_processor(resolve_model(path, "--ablation"))
        systems.append((name, ablated, ablated_processor, True))
    rows, samples, started = {}, {}, time.time()
    for name, system, system_processor, use_ebm in systems:
        responses = generate_responses(system, system_processor, examples, use_ebm, args.batch_size, args.max_new_tokens, args.seed)
        rows[name] = score(examples, responses, scorers, attributes, fluency_model, fluency_tokenizer)
        samples[name] = [{"context": e["context"], "personality": e["personality"], "response": r}
                         for e, r in list(zip(examples, responses))[:16]]
    settings = {
        "model": model_path or "default", "test_file": args.test_file, "examples": len(examples),
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
