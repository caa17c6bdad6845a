"""Assemble the writers' per-aspect source files (`sources/`) into the shipped files, in the authors' format.

    python -m modeling_miracle.corpus.build_corpus

- `dialogue_<attribute>.<split>.jsonl` for split train / validation / test / heldout: `{"input", "output",
  "personas", "tag"}` rows of both aspects, interleaved;
- `dialogue_multi.test.jsonl`: multi-attribute test dialogues, `{"input", "output", "personas", "tags": {...}}`;
- `text_<attribute>.<split>.jsonl` for train / validation: `{"text", "labels"}` sentence-level rows, one per
  assistant turn of the held-apart ("heldout") dialogues, for the attribute classifiers used in evaluation.

The text itself is never changed: this only sorts rows into files.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..configuration.configuration_miracle import PAPER_ATTRIBUTES
from . import CORPUS_DIR, read_jsonl

SOURCES_DIR = CORPUS_DIR / "sources"
DIALOGUE_SPLITS = ("train", "validation", "test", "heldout")
TEXT_VALIDATION_EVERY = 6  # every 6th held-out dialogue goes to the text validation file


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def source_split(row: dict) -> str:
    return "heldout" if row["split"] == "scorer" else row["split"]


def interleave(groups: list[list[dict]]) -> list[dict]:
    """Rows of the aspects alternated (a0, b0, a1, b1, ...), so any prefix of a file stays balanced."""
    out = []
    for index in range(max(len(g) for g in groups)):
        out.extend(g[index] for g in groups if index < len(g))
    return out


def dialogue_row(row: dict) -> dict:
    return {"input": row["input"], "output": row["output"], "personas": row["personas"], "tag": row["tag"]}


def build(out_dir: Path = CORPUS_DIR, sources_dir: Path = SOURCES_DIR) -> dict[str, int]:
    """Write every shipped file into `out_dir`; returns rows written per file."""
    written = {}
    for attribute, aspects in PAPER_ATTRIBUTES.items():
        per_aspect = [read_jsonl(sources_dir / f"{attribute}.{aspect}.jsonl") for aspect in aspects]
        for split in DIALOGUE_SPLITS:
            groups = [[dialogue_row(r) for r in rows if source_split(r) == split] for rows in per_aspect]
            name = f"dialogue_{attribute}.{split}.jsonl"
            written[name] = len(interleave(groups))
            write_jsonl(out_dir / name, interleave(groups))
        text = {"train": [], "validation": []}
        for rows in per_aspect:
            heldout = [r for r in rows if source_split(r) == "heldout"]
            for index, row in enumerate(heldout):
                split = "validation" if index % TEXT_VALIDATION_EVERY == TEXT_VALIDATION_EVERY - 1 else "train"
                text[split].append([{"text": turn, "labels": row["tag"]} for turn in row["output"]])
        for split, dialogues in text.items():
            half = len(dialogues) // 2
            rows = [t for d in interleave([dialogues[:half], dialogues[half:]]) for t in d]
            name = f"text_{attribute}.{split}.jsonl"
            written[name] = len(rows)
            write_jsonl(out_dir / name, rows)
    multi = []
    for path in sorted(sources_dir.glob("multi.*.jsonl")):
        multi.extend({"input": r["input"], "output": r["output"], "personas": r["personas"], "tags": r["tags"]}
                     for r in read_jsonl(path))
    written["dialogue_multi.test.jsonl"] = len(multi)
    write_jsonl(out_dir / "dialogue_multi.test.jsonl", multi)
    return written


if __name__ == "__main__":
    for name, count in build().items():
        print(f"{name}: {count} rows")
