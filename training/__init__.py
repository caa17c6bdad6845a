"""Training MIRACLE: data loading, `MiracleTrainer`, the KL schedule, PEFT, new attributes, the `miracle` CLI."""

from .collator import AttributeInterleavedSampler, MiracleDataCollator
from .data import AUTHORS_HUB_DATASET, AUTHORS_HUB_FILES, LoadReport, MalformedRowError, corpus_files, load_miracle_dataset
from .kl_schedule import cyclical_beta, kl_beta_at
from .trainer import MiracleTrainer

__all__ = [
    "AUTHORS_HUB_DATASET",
    "AUTHORS_HUB_FILES",
    "AttributeInterleavedSampler",
    "LoadReport",
    "MalformedRowError",
    "MiracleDataCollator",
    "MiracleTrainer",
    "corpus_files",
    "cyclical_beta",
    "kl_beta_at",
    "load_miracle_dataset",
]
