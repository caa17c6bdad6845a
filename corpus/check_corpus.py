"""Validate every row of the shipped corpus; exits with status 1 and a list of problems if anything is wrong.

    python -m modeling_miracle.corpus.check_corpus

Checks: schema, turn counts and word/sentence limits (`check_rules`), no question mark in assistant turns, no
duplicate assistant turn anywhere in the corpus, at least 200 training dialogues per aspect over at least 150
topics per attribute, balance between aspects in every split, at least 20 multi-attribute test dialogues per
combination, sentence-level files consistent with the held-apart dialogues, and built files in sync with sources.
"""

from __future__ import annotations

import itertools
import sys
import tempfile
from collections import Counter
from pathlib import Path

from ..configuration.configuration_miracle import PAPER_ATTRIBUTES

from . import CORPUS_DIR, check_rules, read_jsonl
from .build_corpus import DIALOGUE_SPLITS, build

MIN_TRAIN_DIALOGUES_PER_ASPECT = 200
MIN_TOPICS_PER_ATTRIBUTE = 150
MIN_MULTI_PER_COMBINATION = 20
MAX_IMBALANCE = 0.1
MAX_TEXT_IMBALANCE = 0.25  # sentence files: dialogues differ in turn counts


def check_dialogue_rows(path: Path, rows: list[dict], problems: list[str], seen: dict, multi: bool = False) -> None:
    keys = {"input", "output", "personas", "tags" if multi else "tag"}
    for line, row in enumerate(rows, 1):
        where = f"{path.name}:{line}"
        if set(row) != keys:
            problems.append(f"{where}: keys {sorted(row)} (expected {sorted(keys)})")
            continue
        if not isinstance(row["personas"], str) or not row["personas"].strip():
            problems.append(f"{where}: empty personas (topic)")
        tags = row["tags"] if multi else None
        if multi and (not isinstance(tags, dict) or set(tags) != set(PAPER_ATTRIBUTES) or any(t not in (0, 1) for t in tags.values())):
            problems.append(f"{where}: tags must give 0/1 for each of {list(PAPER_ATTRIBUTES)}; got {tags!r}")
        if not multi and row["tag"] not in (0, 1):
            problems.append(f"{where}: tag {row['tag']!r} not in (0, 1)")
        problems.extend(f"{where}: {p}" for p in check_rules.turn_problems(row["input"], row["output"]))
        for turn in row["output"] if isinstance(row["output"], list) else []:
            key = check_rules.normalise(turn)
            if key in seen:
                problems.append(f"{where}: assistant turn duplicates {seen[key]}: {turn!r}")
            seen.setdefault(key, where)


def check_balance(name: str, tags: list[int], problems: list[str], tolerance: float = MAX_IMBALANCE) -> None:
    counts = Counter(tags)
    if len(counts) != 2 or abs(counts[0] - counts[1]) > tolerance * max(counts.values()):
        problems.append(f"{name}: aspects unbalanced {dict(counts)}")


def check(corpus_dir: Path = CORPUS_DIR) -> tuple[list[str], dict]:
    """Return (problems, summary counts) for the corpus in `corpus_dir`."""
    problems, summary, seen = [], {}, {}
    topics = set((corpus_dir / "topics.txt").read_text(encoding="utf-8").splitlines())
    for attribute, aspects in PAPER_ATTRIBUTES.items():
        for split in DIALOGUE_SPLITS:
            path = corpus_dir / f"dialogue_{attribute}.{split}.jsonl"
            rows = read_jsonl(path)
            check_dialogue_rows(path, rows, problems, seen)
            tags = [r.get("tag") for r in rows]
            check_balance(path.name, tags, problems)
            for tag, aspect in enumerate(aspects):
                summary[f"{attribute}/{aspect}/{split}"] = tags.count(tag)
            unknown = {r["personas"] for r in rows} - topics
            if unknown:
                problems.append(f"{path.name}: topics not in topics.txt: {sorted(unknown)[:3]}")
            if split == "train":
                for tag, aspect in enumerate(aspects):
                    if tags.count(tag) < MIN_TRAIN_DIALOGUES_PER_ASPECT:
                        problems.append(f"{path.name}: only {tags.count(tag)} {aspect} dialogues (need {MIN_TRAIN_DIALOGUES_PER_ASPECT})")
                distinct = len({r["personas"] for r in rows})
                summary[f"{attribute}/train_topics"] = distinct
                if distinct < MIN_TOPICS_PER_ATTRIBUTE:
                    problems.append(f"{path.name}: only {distinct} topics (need {MIN_TOPICS_PER_ATTRIBUTE})")
        heldout_turns = {t for r in read_jsonl(corpus_dir / f"dialogue_{attribute}.heldout.jsonl") for t in r["output"]}
        for split in ("train", "validation"):
            path = corpus_dir / f"text_{attribute}.{split}.jsonl"
            rows = read_jsonl(path)
            for line, row in enumerate(rows, 1):
                if set(row) != {"text", "labels"} or row["labels"] not in (0, 1) or row["text"] not in heldout_turns:
                    problems.append(f"{path.name}:{line}: must be {{'text', 'labels'}} from a held-out dialogue; got {row!r}")
            check_balance(path.name, [r.get("labels") for r in rows], problems, MAX_TEXT_IMBALANCE)
            summary[f"{attribute}/text_{split}"] = len(rows)
    path = corpus_dir / "dialogue_multi.test.jsonl"
    rows = read_jsonl(path)
    check_dialogue_rows(path, rows, problems, seen, multi=True)
    combos = Counter(tuple(r["tags"][a] for a in PAPER_ATTRIBUTES) for r in rows if isinstance(r.get("tags"), dict))
    for combo in itertools.product((0, 1), repeat=len(PAPER_ATTRIBUTES)):
        summary[f"multi/{combo}"] = combos[combo]
        if combos[combo] < MIN_MULTI_PER_COMBINATION:
            problems.append(f"{path.name}: {combos[combo]} dialogues for tags {combo} (need {MIN_MULTI_PER_COMBINATION})")
    problems.extend(check_in_sync(corpus_dir))
    return problems, summary


def check_in_sync(corpus_dir: Path) -> list[str]:
    """The shipped files equal a fresh build from `sources/`."""
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp), corpus_dir / "sources")
        return [
            f"{built.name} differs from a fresh build of sources/ (run `python -m modeling_miracle.corpus.build_corpus`)"
            for built in sorted(Path(tmp).glob("*.jsonl"))
            if built.read_bytes() != (corpus_dir / built.name).read_bytes()
        ]


def main() -> int:
    problems, summary = check()
    for key, value in summary.items():
        print(f"{key}: {value}")
    for problem in problems:
        print("PROBLEM", problem)
    print(f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
