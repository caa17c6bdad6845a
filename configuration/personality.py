"""`Personality`: the aspect each row asks for per attribute and its weight, resolved and checked once.

Every layer (the pipeline, `generate`, `sample_latent`, the ODE) takes a `Personality`; the dict forms users write
(`{"attitude": "optimistic"}`, aspects by name or index, `attribute_weights={"attitude": 2.0}`, one dict for all
rows or one per row) are turned into one by [`Personality.resolve`], which names what is valid when they are wrong.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from .validation import as_python_scalar

# Largest |attribute weight|: beyond float32's range a weight cannot even be stored.
MAX_ATTRIBUTE_WEIGHT = float(torch.finfo(torch.float32).max)


def all_personalities(attributes: dict[str, list[str]]) -> list[dict[str, str]]:
    """Every combination of one aspect per attribute (2^3 = 8 for the paper's attributes), in attribute order."""
    return [dict(zip(attributes, combo)) for combo in itertools.product(*attributes.values())]


def per_row(value, batch_size: int, what: str) -> list:
    """One dict (or None) for all rows, or one per row -> a list of `batch_size` entries (checked)."""
    if value is None or isinstance(value, dict):
        return [value] * batch_size
    if isinstance(value, (list, tuple)):
        if len(value) != batch_size:
            raise ValueError(f"`{what}` has {len(value)} entries for a batch of {batch_size} rows; give one dict per row or one dict for all.")
        if not all(v is None or isinstance(v, dict) for v in value):
            raise ValueError(f"Each entry of `{what}` must be a dict attribute -> value (or None); got {value!r}.")
        return list(value)
    raise ValueError(
        f"`{what}` must be a dict attribute -> value, e.g. {{'attitude': 'optimistic'}}, or a list of such dicts "
        f"(one per row); got {value!r}."
    )


@dataclass(frozen=True)
class Personality:
    """Per-row targets: `aspects[b, i]` is the aspect index row b asks for attribute i (-1: not named), `weights[b, i]`
    its lambda_i (0 where not named). Build one with [`Personality.resolve`]."""

    aspects: torch.LongTensor
    weights: torch.Tensor

    @classmethod
    def resolve(cls, config, personality=None, attribute_weights=None, batch_size: int = 1) -> "Personality":
        """Check and convert `personality` (`{attribute: aspect}` by name or index, or one such dict (or None) per
        row, or a `Personality`) and `attribute_weights` (`{attribute: weight}`, default 1 for each named attribute;
        one for all rows or one per row) against `config.attributes`."""
        if isinstance(personality, Personality):
            if attribute_weights is not None:
                raise ValueError("A resolved `Personality` already holds its weights; do not pass `attribute_weights`.")
            if len(personality) != batch_size:
                raise ValueError(f"The personality has {len(personality)} rows for a batch of {batch_size} rows.")
            return personality
        names = config.attribute_names
        rows = per_row(personality, batch_size, "personality")
        weight_rows = per_row(attribute_weights, batch_size, "attribute_weights")
        aspects = torch.full((batch_size, len(names)), -1, dtype=torch.long)
        weights = torch.zeros(batch_size, len(names))
        for b, (row, row_weights) in enumerate(zip(rows, weight_rows)):
            for attribute, aspect in (row or {}).items():
                i = _attribute_position(names, attribute)
                aspects[b, i] = config.aspect_index(attribute, aspect)
                weights[b, i] = 1.0
            for attribute, weight in (row_weights or {}).items():
                i = _attribute_position(names, attribute)
                weights[b, i] = _checked_weight(attribute, weight)
                if aspects[b, i] < 0:
                    raise ValueError(
                        f"attribute_weights gives a weight for {attribute!r}, which the personality does not name; "
                        f"named: {list((row or {}).keys())}."
                    )
        return cls(aspects, weights)

    @classmethod
    def cat(cls, parts: list["Personality"]) -> "Personality":
        """The rows of several personalities, one after the other (batching)."""
        return cls(torch.cat([p.aspects for p in parts]), torch.cat([p.weights for p in parts]))

    def __len__(self) -> int:
        return self.aspects.shape[0]

    @property
    def named(self) -> torch.Tensor:
        """(rows, attributes): whether each row names each attribute."""
        return self.aspects >= 0

    @property
    def steers(self) -> bool:
        """Whether any row has a non-zero weight, i.e. whether the ODE has anything to do."""
        return bool((self.weights != 0).any())

    def to(self, device) -> "Personality":
        return Personality(self.aspects.to(device), self.weights.to(device))

    def opposite(self) -> "Personality":
        """The same aspects with their weights negated: the ODE then moves z away from them (latent guidance)."""
        return Personality(self.aspects, -self.weights)

    def names(self, attributes: dict[str, list[str]]) -> list[dict[str, str]]:
        """Per row, `{attribute: aspect name}` for the attributes it names."""
        return [
            {name: aspects[int(self.aspects[b, i])] for i, (name, aspects) in enumerate(attributes.items())
             if self.aspects[b, i] >= 0}
            for b in range(len(self))
        ]


def _attribute_position(names, attribute) -> int:
    if attribute not in names:
        raise ValueError(f"Unknown attribute {attribute!r}; valid attributes: {names}.")
    return names.index(attribute)


def _checked_weight(attribute, weight) -> float:
    weight = as_python_scalar(weight)  # numpy / 0-d tensor weights
    if (isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight)
            or abs(weight) > MAX_ATTRIBUTE_WEIGHT):
        raise ValueError(
            f"Weight of attribute {attribute!r} must be a finite number with |weight| <= "
            f"{MAX_ATTRIBUTE_WEIGHT:.3g} (float32); got {weight!r}."
        )
    return float(weight)


__all__ = ["MAX_ATTRIBUTE_WEIGHT", "Personality", "all_personalities", "per_row"]
