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


def context_examples(paths: list[str], attributes: dict, max_examples: int | None = None) -> list[dict]:
    """Conversations without targets (rows `{"input": [user turns], "output": [assistant turns]}` that end on a
    user turn, like `../shared/data/contexts/`): the final turn of each row, asked in every personality, context by
    context (so the first `8 * n` examples are n contexts x all 8 personalities of the paper's attributes)."""
    from modeling_miracle.corpus import dialogue_examples, read_jsonl
    from modeling_miracle.evaluation.scorers import context_text
    from modeling_miracle.configuration.personality import all_personalities

    personalities = all_personalities(attributes)
    examples = []
    for path in paths:
        for number, row in enumerate(read_jsonl(path), 1):
            if len(row["input"]) != len(row["output"]) + 1:
                raise ValueError(f"{path}, row {number}: a context row has one more user turn than assistant turns "
                                 f"(it ends on the user turn to answer); got {len(row['input'])} and {len(row['output'])}.")
            last = len(row["output"])
            turn = dialogue_examples({**row, "output": row["output"] + [""], "aspect_id": -1}, -1)[last]
            context = context_text(row["input"], row["output"] + [""], last)
            examples += [{"messages": turn["messages"], "personality": p, "context": context, "reference": ""}
                         for p in personalities]
    return examples[:max_examples]
