"""Shared set-up of the benchmarks: the offline default backbones and corpus prompts."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(function, repeats: int = 3) -> tuple[float, object]:
    """Median wall time of `repeats` calls (after one warm-up call) and the last result."""
    result = function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def corpus_conversations(count: int, split: str = "test") -> list[list[dict]]:
    """First user turns of the packaged corpus's test dialogues (all attributes, in file order)."""
    import json

    from training.data import corpus_files

    conversations = []
    for path in corpus_files(split).values():
        with open(path, encoding="utf-8") as handle:
            conversations += [[{"role": "user", "content": json.loads(line)["input"][0]}] for line in handle]
    return conversations[:count]
