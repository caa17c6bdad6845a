"""Turn the ledger of replies into the dataset: parse and clean every reply (in the plan's order, so the result does
not depend on the order replies arrived in), assign splits, write the files `miracle train` / `miracle evaluate`
read, and the data card."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .aspects import CollectionSpec
from .cleaning import (
    DROP_REASONS,
    AspectScoreFilter,
    CleaningConfig,
    FilterConfig,
    NearDuplicateIndex,
    ToxicityFilter,
    heuristic_problem,
    parse_dialogue,
)
from .plan import WorkItem, personalities, personality_key
from .store import FAILURES_FILE, LEDGER_FILE, Ledger, write_atomic, write_jsonl
from .templates import SINGLE_ASPECT_TEMPLATE

SPLITS = ("train", "validation", "test", "heldout")
TEXT_VALIDATION_SHARE = 0.15  # of the held-out dialogues' responses, for the scorer's validation file


@dataclass
class AspectCounts:
    """One row of the summary table."""

    requested: int = 0
    received: int = 0
    parsed: int = 0
    kept: int = 0
    failed: int = 0


@dataclass
class CollectReport:
    """What a run produced: counts per personality, drops by reason, rows per split, files written."""

    counts: dict[str, AspectCounts] = field(default_factory=dict)
    drops: Counter = field(default_factory=Counter)
    splits: dict[str, Counter] = field(default_factory=dict)  # attribute (or "multi") -> split -> rows
    files: list[str] = field(default_factory=list)
    retries: dict = field(default_factory=dict)
    requests_this_run: int = 0
    failed_this_run: int = 0
    stopped: str | None = None  # why the run stopped early (a fatal backend error)

    def table(self) -> str:
        """The per-aspect summary as a markdown table."""
        lines = ["| aspect | requested | received | parsed | kept |", "|---|---|---|---|---|"]
        total = AspectCounts()
        for name, c in self.counts.items():
            lines.append(f"| {name} | {c.requested} | {c.received} | {c.parsed} | {c.kept} |")
            for f in ("requested", "received", "parsed", "kept"):
                setattr(total, f, getattr(total, f) + getattr(c, f))
        lines.append(f"| all | {total.requested} | {total.received} | {total.parsed} | {total.kept} |")
        return "\n".join(lines)

    def drop_table(self) -> str:
        lines = ["| dropped because | dialogues |", "|---|---|"]
        lines += [f"| {reason} | {self.drops.get(reason, 0)} |" for reason in DROP_REASONS]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"counts": {k: vars(v) for k, v in self.counts.items()}, "drops": {r: self.drops.get(r, 0) for r in DROP_REASONS},
                "splits": {k: dict(v) for k, v in self.splits.items()}, "files": self.files, "retries": self.retries,
                "requests_this_run": self.requests_this_run, "stopped": self.stopped}


def split_of(seed: int, item_key: str, topic: str, fractions: list[float]) -> str:
    """A dialogue's split from a hash of its identity: stable across reruns and filter changes."""
    u = int.from_bytes(hashlib.sha256(f"{seed}|{item_key}|{topic}".encode()).digest()[:8], "big") / 2**64
    total, cumulative = sum(fractions), 0.0
    for name, fraction in zip(SPLITS, fractions):
        cumulative += fraction / total
        if fraction > 0 and u < cumulative:
            return name
    return [name for name, fraction in zip(SPLITS, fractions) if fraction > 0][-1]  # float rounding at u ~ 1


@dataclass
class Candidate:
    item: WorkItem
    user: list[str]
    assistant: list[str]


def clean(items: list[WorkItem], replies: dict[tuple, str], spec: CollectionSpec, config: CleaningConfig,
          report: CollectReport, toxicity: ToxicityFilter | None = None) -> list[Candidate]:
    """Parse the replies of `items` (in plan order), apply the heuristics, near-duplicate and toxicity filters;
    count everything in `report`."""
    index = NearDuplicateIndex(config.near_duplicate_threshold)
    for aspects in spec.aspects.values():  # a verbatim copy of an in-context example is not new data
        for aspect in aspects:
            for example in aspect.examples:
                index.add(example["response"])
    survivors = []
    for item in items:
        counts = report.counts[personality_key(item.personality)]
        if item.identity not in replies:
            continue
        counts.received += 1
        parsed = parse_dialogue(replies[item.identity])
        if parsed is None:
            report.drops["unparseable"] += 1
            continue
        counts.parsed += 1
        problem = heuristic_problem(*parsed, config)
        if problem is None and index.dialogue_is_duplicate(parsed[1]):
            problem = "near_duplicate"
        if problem:
            report.drops[problem] += 1
            continue
        for response in parsed[1]:
            index.add(response)
        survivors.append(Candidate(item, *parsed))
    if toxicity is not None and survivors:
        flags = toxicity.toxic([c.user + c.assistant for c in survivors])
        report.drops["toxic"] += sum(flags)
        survivors = [c for c, toxic in zip(survivors, flags) if not toxic]
    return survivors


def targets_of(candidate: Candidate, spec: CollectionSpec) -> dict[str, int]:
    return {a: spec.attributes[a].index(name) for a, name in candidate.item.personality.items()}


def apply_aspect_filter(survivors: list[Candidate], spec: CollectionSpec, aspect_filter: AspectScoreFilter,
                        report: CollectReport) -> list[Candidate]:
    """Drop dialogues whose target aspect scores below the filter's threshold."""
    if not survivors:
        return survivors
    scores = aspect_filter.scores([c.assistant for c in survivors], [targets_of(c, spec) for c in survivors])
    low = [s < aspect_filter.threshold for s in scores]
    report.drops["low_aspect_score"] += sum(low)
    return [c for c, is_low in zip(survivors, low) if not is_low]


def scorer_text_rows(survivors: list[Candidate], spec: CollectionSpec, attribute: str, seed: int,
                     fractions: list[float]) -> dict[str, list[dict]]:
    """Sentence-level `{"text", "labels"}` rows of the held-out dialogues of `attribute`, split train / validation
    (the files `miracle evaluate --scorer-data` trains an attribute scorer from)."""
    text = {"train": [], "validation": []}
    for c in survivors:
        if attribute in c.item.personality and split_of(seed, c.item.key, c.item.topic, fractions) == "heldout":
            share = [1 - TEXT_VALIDATION_SHARE, TEXT_VALIDATION_SHARE]
            part = "validation" if split_of(seed + 1, c.item.key, c.item.topic, share) == "validation" else "train"
            label = spec.attributes[attribute].index(c.item.personality[attribute])
            text[part] += [{"text": t, "labels": label} for t in c.assistant]
    return text


def _write_rows(path: Path, rows: list[dict], report: CollectReport) -> None:
    """Write a non-empty file (and list it); an empty one is not written, and an old copy is removed."""
    if rows:
        write_jsonl(path, rows)
        report.files.append(path.name)
    elif path.exists():
        path.unlink()


def write_dataset(output_dir: Path, survivors: list[Candidate], spec: CollectionSpec, mode: str, seed: int,
                  fractions: list[float], report: CollectReport) -> None:
    """The dataset files: per attribute and split for training data, one tagged file for test data."""
    attributes = spec.attributes
    if mode == "test":
        rows = [{"input": c.user, "output": c.assistant, "personas": c.item.topic,
                 "tags": {a: attributes[a].index(name) for a, name in c.item.personality.items()}} for c in survivors]
        _write_rows(output_dir / "dialogue_multi.test.jsonl", rows, report)
        report.splits["multi"] = Counter(test=len(rows))
        return
    for attribute, aspects in attributes.items():
        by_split: dict[str, list] = {name: [] for name in SPLITS[:len(fractions)] if fractions[SPLITS.index(name)] > 0}
        for c in survivors:
            if attribute in c.item.personality:
                split = split_of(seed, c.item.key, c.item.topic, fractions)
                by_split[split].append(c)
        report.splits[attribute] = Counter({name: len(rows) for name, rows in by_split.items()})
        for split, candidates in by_split.items():
            rows = [{"input": c.user, "output": c.assistant, "personas": c.item.topic,
                     "tag": aspects.index(c.item.personality[attribute])} for c in candidates]
            _write_rows(output_dir / f"dialogue_{attribute}.{split}.jsonl", rows, report)
        for part, rows in scorer_text_rows(survivors, spec, attribute, seed, fractions).items():
            _write_rows(output_dir / f"text_{attribute}.{part}.jsonl", rows, report)


def train_command(output_dir: Path, spec: CollectionSpec, report: CollectReport) -> str:
    """A `miracle train` command line for the collected files."""
    files = lambda split: " ".join(f"{a}={output_dir / f'dialogue_{a}.{split}.jsonl'}" for a in spec.attributes
                                   if report.splits.get(a, {}).get(split))
    if not files("train"):
        return "(no dialogues were kept, so there is nothing to train on yet: collect more, then rerun to rebuild this card)"
    command = (f"miracle train --encoder default --decoder default --attributes '{json.dumps(spec.attributes)}' \\\n"
               f"  --data_files {files('train')} \\\n")
    if files("validation"):
        command += f"  --validation_files {files('validation')} \\\n"
    return command + "  --output_dir runs/collected --max_steps 500"


def write_data_card(output_dir: Path, spec: CollectionSpec, report: CollectReport, run: dict, cleaning: CleaningConfig,
                    template: str, filters: dict) -> None:
    """README.md: source model(s), template, settings, counts, what was dropped and why, the files."""
    settings = run["settings"]
    split_lines = ["| file set | " + " | ".join(SPLITS) + " |", "|---|" + "---|" * len(SPLITS)]
    split_lines += [f"| {name} | " + " | ".join(str(counts.get(s, 0)) for s in SPLITS) + " |" for name, counts in report.splits.items()]
    sources = "\n".join(f"- `{json.dumps(b)}`" for b in run["backends"])
    text = f"""# Collected MIRACLE dialogues

Single-aspect{' / multi-attribute test' if settings['mode'] == 'test' else ''} dialogues written by a chat LLM with
the instruction template of the MIRACLE paper (appendix A.1), cleaned as in appendix A.2, made by `miracle collect`.

## Source

{sources}

- mode: `{settings['mode']}`, seed: {settings['seed']}, dialogues per {'combination' if settings['mode'] == 'test' else 'aspect'}: {run.get('dialogues_per_aspect')}
- attributes: `{json.dumps(spec.attributes)}` (from {', '.join(spec.sources)})
- topics: {settings['topics_count']} seed topics from `{settings['topics_file']}`
- cleaning: `{json.dumps(vars(cleaning))}`
- classifier filters: `{json.dumps(filters)}`

## Counts

{report.table()}

{report.drop_table()}

Rows per split (dialogues; splits are drawn from a hash of each item, so they stay put on reruns; empty splits
have no file):

{chr(10).join(split_lines)}

## Files

{chr(10).join(f'- `{f}`' for f in report.files)}
- `collected.jsonl`: every raw reply (the resumable ledger); `failures.jsonl`: requests that failed for good.

Train on it:

```bash
{train_command(output_dir, spec, report) if settings['mode'] == 'train' else 'miracle evaluate --model runs/mine --test-file ' + str(output_dir / 'dialogue_multi.test.jsonl')}
```

## Template

```text
{template}
```

Generated text: check it before publishing. The instructions ask for harmless content and the optional toxicity
filter removes what a classifier flags, but neither is a guarantee.
"""
    write_atomic(output_dir / "README.md", text)
    write_atomic(output_dir / "summary.json", json.dumps(report.to_dict(), indent=2) + "\n")


def aspect_scorer_paths(filters: FilterConfig, spec: CollectionSpec, survivors: list[Candidate], seed: int,
                        fractions: list[float]) -> dict[str, str]:
    """Scorer folder per attribute; a missing one is trained from this collection's held-out dialogues."""
    from ..evaluation.scorers import train_sequence_classifier

    paths = {}
    for attribute, aspects in spec.attributes.items():
        path = Path(filters.aspect_scorers) / attribute
        if not (path / "config.json").is_file():
            rows = scorer_text_rows(survivors, spec, attribute, seed, fractions)
            if len({r["labels"] for r in rows["train"]}) < len(aspects) or not rows["validation"]:
                raise ValueError(f"No {attribute} scorer in {path}, and too few held-out dialogues to train one "
                                 f"({len(rows['train'])} train / {len(rows['validation'])} validation responses). "
                                 f"Collect more (the 'heldout' split fraction), or give a trained scorer folder.")
            result = train_sequence_classifier(rows["train"], rows["validation"], aspects, str(path), epochs=filters.scorer_epochs)
            print(f"Trained the {attribute} aspect scorer on {len(rows['train'])} held-out responses: validation "
                  f"accuracy {result.validation_accuracy:.1f}%")
        paths[attribute] = str(path)
    return paths


def finalize(output_dir: Path, items: list[WorkItem], spec: CollectionSpec, mode: str, seed: int, fractions: list[float],
             cleaning: CleaningConfig, filters: FilterConfig, report: CollectReport, run: dict) -> CollectReport:
    """Rebuild the dataset, the data card and `summary.json` from the ledger (cheap; rerun it to change filters)."""
    replies = {(r["key"], r["topic"]): r["reply"] for r in Ledger(output_dir / LEDGER_FILE).read()}
    failed = {(r["key"], r["topic"]) for r in Ledger(output_dir / FAILURES_FILE).read()} - set(replies)
    report.counts = {personality_key(p): AspectCounts() for p in personalities(spec, mode)}
    report.drops = Counter()
    for item in items:
        if item.identity in failed:
            report.counts[personality_key(item.personality)].failed += 1
    toxicity = None
    if filters.toxicity_model:
        toxicity = ToxicityFilter(filters.toxicity_model, filters.max_toxicity, tuple(filters.toxic_labels))
    survivors = clean(items, replies, spec, cleaning, report, toxicity)
    if filters.aspect_scorers:
        paths = aspect_scorer_paths(filters, spec, survivors, seed, fractions)
        survivors = apply_aspect_filter(survivors, spec, AspectScoreFilter(paths, spec.attributes, filters.min_aspect_score), report)
    for c in survivors:
        report.counts[personality_key(c.item.personality)].kept += 1
    for counts in report.counts.values():
        counts.requested = counts.received + counts.failed
    report.files = []
    write_dataset(output_dir, survivors, spec, mode, seed, fractions, report)
    filter_settings = {k: v for k, v in vars(filters).items() if v is not None}
    template = spec.test_template if mode == "test" else spec.template
    write_data_card(output_dir, spec, report, run, cleaning, template or SINGLE_ASPECT_TEMPLATE, filter_settings)
    return report
