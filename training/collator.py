"""Batch collation (tokenisation through `MiracleProcessor`) and attribute-mixing batch order."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch


@dataclass
class MiracleDataCollator:
    """Turns examples (`messages`, `response`, `attribute_id`, `aspect_id`) into a MIRACLE training batch.

    With `latent_only=True` the decoder inputs are left out (training a new attribute head on the frozen latent
    space needs only the encoders).

    `decoder_history_dropout` (not in the paper; default 0): the share of examples whose decoder prompt keeps only
    the last user turn (the encoders still read the whole context). Earlier assistant turns show the aspect, so a
    decoder that sees them can copy the style from the history and ignore z; without them, z is its only source.
    """

    processor: object
    latent_only: bool = False
    decoder_history_dropout: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if not 0 <= self.decoder_history_dropout <= 1:
            raise ValueError(f"`decoder_history_dropout` must be in [0, 1]; got {self.decoder_history_dropout}.")
        self._rng = random.Random(self.seed)

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        messages = [e["messages"] for e in examples]
        decoder_messages = None
        if self.decoder_history_dropout > 0:
            decoder_messages = [m[-1:] if self._rng.random() < self.decoder_history_dropout else m for m in messages]
        batch = dict(self.processor(messages, responses=[e["response"] for e in examples],
                                    decoder_conversations=decoder_messages))
        if self.latent_only:
            for key in ("input_ids", "attention_mask", "labels"):
                batch.pop(key)
        batch["attribute_ids"] = torch.tensor([e["attribute_id"] for e in examples], dtype=torch.long)
        batch["aspect_ids"] = torch.tensor([e["aspect_id"] for e in examples], dtype=torch.long)
        return batch


class AttributeInterleavedSampler(torch.utils.data.Sampler):
    """Shuffles each attribute's examples, then interleaves the attributes, so every batch mixes them evenly
    and the attribute-distance loss (eq. 5) compares attribute means within each batch.

    Under several processes every process draws the same order (same seed and epoch) and Accelerate's
    `BatchSamplerShard` (which the Trainer's `accelerator.prepare` adds) deals its batches out in turn: process
    k gets batches k, k + n, k + 2n, ... Each process's batch is a slice of the interleaved order, so it mixes
    the attributes too, and one optimisation step sees the same examples as a single process with an n times
    larger batch. Each epoch holds every example exactly once when the data set fills whole steps
    (`per_device_train_batch_size` x processes); otherwise the last step is completed with examples from the
    start of the epoch (Accelerate's `even_batches`), or dropped with `dataloader_drop_last=True`.
    """

    def __init__(self, attribute_ids: list[int], seed: int = 0):
        self.attribute_ids = list(attribute_ids)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.attribute_ids)

    def __iter__(self):
        rng = random.Random(self.seed + self.epoch)
        groups = {}
        for index, attribute in enumerate(self.attribute_ids):
            groups.setdefault(attribute, []).append(index)
        queues = [rng.sample(g, len(g)) for g in groups.values()]
        # Take from each attribute in proportion to its size: merge by fractional position.
        keyed = [((i + rng.random()) / len(q), k, index) for k, q in enumerate(queues) for i, index in enumerate(q)]
        self.epoch += 1
        return iter(index for _, _, index in sorted(keyed))
