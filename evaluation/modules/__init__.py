"""MIRACLE's metrics as `evaluate` modules shipped in the package, loaded from their local folders (no Hub access):
`personalization_accuracy` and `dialogue_text_metrics` (BLEU, ROUGE, Distinct, self-BLEU).

NLI coherence and perplexity stay functions of `evaluation.metrics`: each is a model's judgement (an NLI
classifier over context-response pairs, a causal LM), which the caller loads once and reuses across systems.
"""

from __future__ import annotations

from pathlib import Path

MODULES_DIR = Path(__file__).resolve().parent
NAMES = ("personalization_accuracy", "dialogue_text_metrics")


def module_path(name: str) -> str:
    """The local script of a shipped module (what `evaluate.load` takes)."""
    if name not in NAMES:
        raise ValueError(f"Unknown MIRACLE metric {name!r}; shipped metrics: {list(NAMES)}.")
    return str(MODULES_DIR / name / f"{name}.py")


def load_metric(name: str, **kwargs):
    """`evaluate.load` of a shipped module from its local path."""
    import evaluate

    return evaluate.load(module_path(name), **kwargs)


__all__ = ["NAMES", "load_metric", "module_path"]
