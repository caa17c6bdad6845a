"""The paper's evaluation (section 4.2, tables 1 and 4) as functions: test examples with target personalities,
greedy generation, scorer models (trained on first use), and one row of every metric per system."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..corpus import CORPUS_DIR, dialogue_examples, read_jsonl
from ..configuration.personality import all_personalities
from . import metrics
from .scorers import context_text, train_attribute_scorer, train_nli_scorer

COLUMNS = ["Avg.", "BLEU", "Rouge", "NLI", "PPL", "Distinct", "sBLEU"]


def evaluation_examples(test_files: str | list[str], attributes: dict[str, list[str]], max_examples: int | None = None) -> list[dict]:
    """One example per assistant turn: messages, reference response, target personality; interleaved by personality."""
    by_personality: dict[tuple, list[dict]] = {}
    for test_file in [test_files] if isinstance(test_files, (str, Path)) else test_files:
        for row in read_jsonl(test_file):
            targets = row_targets(row.get("tags") or {}, attributes)
            for k, turn in enumerate(dialogue_examples({**row, "aspect_id": -1}, attribute_id=-1)):
                for personality in targets:
                    by_personality.setdefault(tuple(personality.values()), []).append({
                        "messages": turn["messages"], "reference": turn["response"], "personality": personality,
                        "context": context_text(row["input"], row["output"], k),
                    })
    queues = list(by_personality.values())
    interleaved = [q[i] for i in range(max(map(len, queues))) for q in queues if i < len(q)]
    return interleaved[:max_examples]


def row_targets(tags: dict[str, int], attributes: dict[str, list[str]]) -> list[dict[str, str]]:
    """The target personalities of a test row: its tagged aspects, and every aspect of the model's attributes it has
    no tag for (a model with an attribute of its own, e.g. humour, on the corpus's three-attribute test set)."""
    choices = {a: [aspects[tags[a]]] if a in tags else aspects for a, aspects in attributes.items()}
    return all_personalities(choices)


def missing_scorer_data(scorer_dir: str, attributes: dict[str, list[str]], data_dir: str | Path = CORPUS_DIR) -> list[str]:
    """What `ensure_scorers` would need and cannot find, one line per attribute (empty: all scorers can be had)."""
    data_dir = Path(data_dir)
    missing = []
    for attribute in attributes:
        if os.path.isfile(os.path.join(scorer_dir, attribute, "config.json")):
            continue
        if not (data_dir / f"text_{attribute}.train.jsonl").is_file():
            missing.append(f"{attribute!r}: no trained scorer in {os.path.join(scorer_dir, attribute)} and no "
                           f"text_{attribute}.train.jsonl / .validation.jsonl in {data_dir} to train one (give the folder "
                           f"with --scorer-data; `miracle collect` writes these files)")
    return missing


def scorers_to_train(scorer_dir: str, attributes) -> list[str]:
    """The scorers (attributes, and "nli") not yet in `scorer_dir`."""
    return [name for name in [*attributes, "nli"] if not os.path.isfile(os.path.join(scorer_dir, name, "config.json"))]


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
    """Every metric of table 1 for one system's responses (personalization accuracy and the text metrics through
    the package's `evaluate` modules, see `evaluation.modules`)."""
    from .modules import load_metric

    row = {}
    accuracy_metric = load_metric("personalization_accuracy")
    for a in attributes:
        row[a] = accuracy_metric.compute(predictions=responses, references=[e["personality"][a] for e in examples],
                                         scorer=scorers[a])["personalization_accuracy"]
    row = {"Avg.": sum(row.values()) / len(row), **row}
    references = [e["reference"] for e in examples]
    safe = [r if r.strip() else "." for r in responses]  # an empty generation still counts (scores ~0)
    text = load_metric("dialogue_text_metrics").compute(predictions=safe, references=references,
                                                        self_bleu_sample=150)
    row["BLEU"], row["Rouge"] = text["bleu"], text["rouge"]
    row["NLI"] = metrics.nli_coherence(scorers["nli"].predict([e["context"] for e in examples], safe))
    row["PPL"] = metrics.perplexity(safe, fluency_model, fluency_tokenizer)["perplexity"]
    row["Distinct"], row["sBLEU"] = text["distinct"], text["self_bleu"]
    return row


def markdown_table(rows: dict[str, dict], attributes) -> str:
    columns = ["Avg."] + list(attributes) + COLUMNS[1:]
    lines = ["| system | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.2f}" for c in columns) + " |")
    return "\n".join(lines)
