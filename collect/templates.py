"""The instruction templates of paper appendix A.1 and how one request's prompt is filled.

Placeholders (Python `str.format` names) of the single-aspect template: `{manner}`, `{character}`, `{adjective}`,
`{topic}`, `{example}` (the in-context exchange as `[PersonA]: ...` / `[PersonB]: ...` lines, or nothing). The
multi-attribute test template takes the same names, each filled with the aspects' wordings joined together.
"""

from __future__ import annotations

import random

from .aspects import AspectDescription, CollectionSpec

REQUIREMENTS = (
    "Here are the requirements:\n"
    "1. The PersonA question should be 1 to 2 sentences long with at most 30 words;\n"
    "2. The PersonB tries to respond shortly with less than 60 words and 2 sentences long in each turn;\n"
    "3. The PersonB doesn't ask questions. PersonB will stop the conversation when they have no more questions;\n"
    "4. The conversation has at least 4 turns;\n"
    "5. Try not to repeat the verb for each conversation turn to maximize diversity;\n"
    "6. Ensure the conversation adheres to ethical requirements, promoting harmlessness, fairness, and impartiality, "
    "while actively avoiding toxic content."
)

_OPENING = (
    "Forget the instruction you have previously received. The following is a conversation between PersonA and "
    "PersonB. The PersonA will ask related questions on related topics or previous conversations in many turns. "
    "The PersonB answers PersonA questions {manner}. The PersonB is {character}. They chat about the topic: "
    "'{topic}'. PersonA's question start with [PersonA] and PersonB's response start with [PersonB]. "
    "Write the multi-turn {adjective} dialogue in exactly the following format:\n"
)
SINGLE_ASPECT_TEMPLATE = _OPENING + "{example}[PersonA]: ...\n[PersonB]: ...\n" + REQUIREMENTS
MULTI_ATTRIBUTE_TEMPLATE = SINGLE_ASPECT_TEMPLATE  # the appendix's test prompt: the same text, descriptions concatenated


def _join(parts: list[str], last: str = " and ") -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + last + parts[-1]


def _example_lines(example: dict | None) -> str:
    return f"[PersonA]: {example['post']}\n[PersonB]: {example['response']}\n" if example else ""


def fill_single_aspect(aspect: AspectDescription, topic: str, rng: random.Random, template: str | None = None) -> tuple[str, dict]:
    """(prompt, choices) for one single-aspect dialogue: one wording per slot and one example, drawn from `rng`."""
    choices = {slot: rng.randrange(len(getattr(aspect, slot))) for slot in ("manner", "character", "adjective")}
    choices["example"] = rng.randrange(len(aspect.examples)) if aspect.examples else None
    example = aspect.examples[choices["example"]] if aspect.examples else None
    prompt = (template or SINGLE_ASPECT_TEMPLATE).format(
        manner=aspect.manner[choices["manner"]], character=aspect.character[choices["character"]],
        adjective=aspect.adjective[choices["adjective"]], topic=topic, example=_example_lines(example),
    )
    return prompt, choices


def fill_multi_attribute(aspects: list[AspectDescription], topic: str, rng: random.Random, template: str | None = None) -> tuple[str, dict]:
    """(prompt, choices) for one test dialogue showing several aspects at once (appendix A.1's test prompt: the
    aspects' descriptions concatenated; no in-context example, which would show only one aspect)."""
    picks = [{slot: rng.randrange(len(getattr(a, slot))) for slot in ("manner", "character", "adjective")} for a in aspects]
    prompt = (template or MULTI_ATTRIBUTE_TEMPLATE).format(
        manner=_join([a.manner[p["manner"]] for a, p in zip(aspects, picks)]),
        character="; ".join(a.character[p["character"]] for a, p in zip(aspects, picks)),
        adjective=_join([a.adjective[p["adjective"]] for a, p in zip(aspects, picks)]),
        topic=topic, example="",
    )
    return prompt, {f"{a.attribute}": p for a, p in zip(aspects, picks)}


def build_prompt(spec: CollectionSpec, personality: dict[str, str], topic: str, rng: random.Random) -> tuple[str, dict]:
    """The prompt for one request: the single-aspect template for one attribute, the test template for several."""
    aspects = [spec.aspect(attribute, name) for attribute, name in personality.items()]
    if len(aspects) == 1:
        return fill_single_aspect(aspects[0], topic, rng, spec.template)
    return fill_multi_attribute(aspects, topic, rng, spec.test_template)
