"""Shared set-up of the benchmarks: the offline default backbones and corpus prompts."""

from __future__ import annotations

import statistics
import time



def timed(function, repeats: int = 3) -> tuple[float, object]:
    """Median wall time of `repeats` calls (after one warm-up call) and the last result."""
    result = function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def scorer_models(folder: str, attributes: dict) -> dict:
    """The project's scorers (one per attribute, plus `nli`), trained into `folder` first when missing."""
    from modeling_miracle.evaluation.suite import ensure_scorers
    from modeling_miracle.evaluation.scorers import SequenceScorer

    return {name: SequenceScorer(path) for name, path in ensure_scorers(folder, attributes).items()}


def corpus_examples_by_aspect(split: str, attributes: dict, first_turn_only: bool = False) -> dict:
    """The packaged corpus's turn examples of `split`, as `{attribute: {aspect index: [example, ...]}}` (each example
    also names its `attribute`)."""
    from modeling_miracle.corpus import read_jsonl
    from modeling_miracle.training.data import corpus_files, dialogue_examples

    grouped = {}
    for attribute, path in corpus_files(split).items():
        if attribute not in attributes:
            continue
        by_aspect = grouped.setdefault(attribute, {})
        for row in read_jsonl(path):
            examples = dialogue_examples({**row, "aspect_id": row["tag"]}, list(attributes).index(attribute))
            for example in examples[:1] if first_turn_only else examples:
                by_aspect.setdefault(row["tag"], []).append({**example, "attribute": attribute})
    return grouped
