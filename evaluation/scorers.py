"""Scorer models of the evaluation (paper section 4.2, appendix C.3), trained with the `Trainer`:
per-attribute text classifiers (personalization) and the NLI-style coherence classifier."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

import datasets
import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

from ..corpus import read_jsonl

NLI_LABELS = ["inconsistent", "consistent"]


def default_scorer_backbone() -> str:
    """The packaged all-MiniLM-L6-v2 folder (a BERT-family encoder)."""
    from ..backbones import minilm_folder

    return str(minilm_folder())


def read_text_rows(path: str) -> list[dict]:
    """Sentence-level rows `{"text", "labels"}` of a JSONL file."""
    rows = read_jsonl(path)
    for line, row in enumerate(rows, 1):
        if not isinstance(row.get("text"), str) or not isinstance(row.get("labels"), int):
            raise ValueError(f"{path}, line {line}: rows must be {{'text': str, 'labels': int}}; got {row!r}.")
    return rows


def context_text(user_turns: list[str], assistant_turns: list[str], k: int) -> str:
    """The conversation before assistant turn k, as one string."""
    turns = [t for pair in zip(user_turns[:k], assistant_turns[:k]) for t in pair] + [user_turns[k]]
    return " ".join(turns)


def nli_rows(dialogue_files: list[str], seed: int = 0) -> list[dict]:
    """Coherence pairs: each context with its own response (consistent) and with a response taken from another
    dialogue (inconsistent), balanced."""
    examples = []
    for path in dialogue_files:
        for number, row in enumerate(read_jsonl(path)):
            for k in range(len(row["output"])):
                examples.append((context_text(row["input"], row["output"], k), row["output"][k], (path, number)))
    rng = random.Random(seed)
    rows = []
    for context, response, owner in examples:
        rows.append({"text": context, "text_pair": response, "labels": 1})
        while True:
            other_context, other_response, other_owner = rng.choice(examples)
            if other_owner != owner:
                break
        rows.append({"text": context, "text_pair": other_response, "labels": 0})
    return rows


@dataclass
class ScorerResult:
    """A trained scorer: where it was saved and its held-out accuracy (percent)."""

    path: str
    validation_accuracy: float


def train_sequence_classifier(
    train_rows: list[dict],
    validation_rows: list[dict],
    labels: list[str],
    output_dir: str,
    backbone: str | None = None,
    epochs: float = 2.0,
    learning_rate: float = 5e-5,
    batch_size: int = 32,
    max_length: int = 64,
    seed: int = 0,
) -> ScorerResult:
    """Fine-tune a sequence classifier (sentence or sentence-pair rows) with the Trainer and save it."""
    backbone = backbone or default_scorer_backbone()
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    model = AutoModelForSequenceClassification.from_pretrained(
        backbone, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)}
    )

    def encode(batch):
        pair = batch.get("text_pair")
        return tokenizer(batch["text"], pair, truncation=True, max_length=max_length)

    train = datasets.Dataset.from_list(train_rows).map(encode, batched=True)
    validation = datasets.Dataset.from_list(validation_rows).map(encode, batched=True)
    args = TrainingArguments(
        output_dir=output_dir, num_train_epochs=epochs, learning_rate=learning_rate, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=64, save_strategy="no", report_to=[], seed=seed, logging_steps=20, disable_tqdm=False,
    )
    args.dataloader_pin_memory = args.device.type != "cpu"  # pinning without an accelerator only warns

    def compute_metrics(prediction):
        return {"accuracy": float((np.argmax(prediction.predictions, -1) == prediction.label_ids).mean() * 100)}

    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=validation, processing_class=tokenizer,
                      compute_metrics=compute_metrics)
    trainer.train()
    accuracy = trainer.evaluate()["eval_accuracy"]
    trainer.save_model(output_dir)
    with open(f"{output_dir}/scorer.json", "w", encoding="utf-8") as handle:
        json.dump({"validation_accuracy": accuracy, "train_rows": len(train_rows), "validation_rows": len(validation_rows),
                   "backbone": backbone}, handle, indent=2)
    return ScorerResult(output_dir, accuracy)


def train_attribute_scorer(train_file: str, validation_file: str, aspects: list[str], output_dir: str, **kwargs) -> ScorerResult:
    """A text classifier for one attribute from `{"text", "labels"}` files."""
    return train_sequence_classifier(read_text_rows(train_file), read_text_rows(validation_file), aspects, output_dir, **kwargs)


def train_nli_scorer(train_dialogue_files: list[str], validation_dialogue_files: list[str], output_dir: str,
                     max_pairs: int | None = 6000, **kwargs) -> ScorerResult:
    """The coherence classifier: own response vs a response from another dialogue (at most `max_pairs` training
    pairs, drawn with a fixed seed, to keep CPU training to minutes)."""
    train = nli_rows(train_dialogue_files)
    random.Random(0).shuffle(train)
    return train_sequence_classifier(train[:max_pairs], nli_rows(validation_dialogue_files, seed=1), NLI_LABELS,
                                     output_dir, **kwargs)


class SequenceScorer:
    """A saved scorer classifier: `predict(texts, pairs=None)` gives label indices."""

    def __init__(self, path: str, device: str | None = None):
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path).eval()
        if device:
            self.model.to(device)

    @torch.no_grad()
    def predict_proba(self, texts: list[str], pairs: list[str] | None = None, batch_size: int = 64, max_length: int = 128) -> list[list[float]]:
        """Label probabilities (softmax) for each text (or text pair)."""
        probabilities = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(texts[start:start + batch_size], None if pairs is None else pairs[start:start + batch_size],
                                   truncation=True, max_length=max_length, padding=True, return_tensors="pt").to(self.model.device)
            probabilities += self.model(**batch).logits.float().softmax(-1).tolist()
        return probabilities

    def predict(self, texts: list[str], pairs: list[str] | None = None, batch_size: int = 64, max_length: int = 128) -> list[int]:
        return [int(np.argmax(p)) for p in self.predict_proba(texts, pairs, batch_size, max_length)]
