"""Which dialogues to request: one work item per (personality, sample), each with its seed topic and prompt.

Everything is drawn from string-seeded `random.Random` instances, so the plan depends only on `seed`, the
attributes file and the topics, never on the run's order or concurrency, and item k of an aspect stays the same when
`dialogues_per_aspect` grows (reruns with a larger count only add items).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .aspects import CollectionSpec
from .templates import build_prompt

MODES = ("train", "test")


@dataclass
class WorkItem:
    """One requested dialogue."""

    key: str  # "attitude=optimistic#3"; with the topic, what resuming compares
    personality: dict[str, str]  # one attribute -> aspect for training data; all attributes for test data
    sample: int
    topic: str
    prompt: str
    choices: dict = field(default_factory=dict)  # which wording / example filled each slot
    seed: int = 0  # per-request seed passed to the backend

    @property
    def identity(self) -> tuple[str, str]:
        return self.key, self.topic


def personality_key(personality: dict[str, str]) -> str:
    return ",".join(f"{attribute}={aspect}" for attribute, aspect in personality.items())


def personalities(spec: CollectionSpec, mode: str) -> list[dict[str, str]]:
    """Single aspects (`train`) or every combination of one aspect per attribute (`test`)."""
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; valid: {list(MODES)}.")
    if mode == "train":
        return [{attribute: aspect} for attribute, aspects in spec.attributes.items() for aspect in aspects]
    from ..configuration.personality import all_personalities  # loads torch: not needed for `miracle collect --help`

    return all_personalities(spec.attributes)


def topic_for(topics: list[str], seed: int, key: str, sample: int) -> str:
    """Topic of sample `sample`: every topic once per cycle through a seeded permutation (fresh each cycle)."""
    cycle, position = divmod(sample, len(topics))
    order = list(range(len(topics)))
    random.Random(f"{seed}|{key}|cycle{cycle}").shuffle(order)
    return topics[order[position]]


def plan_items(spec: CollectionSpec, topics: list[str], dialogues_per_aspect: int, seed: int = 0, mode: str = "train") -> list[WorkItem]:
    """All work items, in a stable order (sample-major, so early items cover every aspect)."""
    if dialogues_per_aspect < 1:
        raise ValueError(f"dialogues_per_aspect must be at least 1; got {dialogues_per_aspect}.")
    items = []
    for sample in range(dialogues_per_aspect):
        for personality in personalities(spec, mode):
            base = personality_key(personality)
            topic = topic_for(topics, seed, base, sample)
            rng = random.Random(f"{seed}|{base}|{sample}")
            prompt, choices = build_prompt(spec, personality, topic, rng)
            items.append(WorkItem(f"{base}#{sample}", personality, sample, topic, prompt, choices, rng.randrange(2**31)))
    return items
