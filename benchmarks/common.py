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
