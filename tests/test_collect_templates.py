"""Attribute files, the appendix-A templates and the work plan."""

import json
import random

import pytest

from modeling_miracle.collect import load_collection_spec, plan_items, read_topics
from modeling_miracle.collect.templates import build_prompt


def test_packaged_file_has_the_projects_three_attributes():
    spec = load_collection_spec("default")
    assert spec.attributes == {"language_style": ["plain", "lyrical"], "attitude": ["pessimistic", "optimistic"],
                               "mental_characteristics": ["emotional", "critical"]}
    for aspects in spec.aspects.values():
        for aspect in aspects:
            assert len(aspect.manner) >= 3 and len(aspect.character) >= 3 and len(aspect.examples) >= 2
            assert all("?" not in e["response"] for e in aspect.examples)


def test_single_aspect_prompt_follows_appendix_a():
    spec = load_collection_spec()
    prompt, choices = build_prompt(spec, {"attitude": "optimistic"}, "I teach math at a middle school.", random.Random(0))
    aspect = spec.aspect("attitude", "optimistic")
    assert prompt.startswith("Forget the instruction you have previously received.")
    assert f"The PersonB answers PersonA questions {aspect.manner[choices['manner']]}." in prompt
    assert f"The PersonB is {aspect.character[choices['character']]}." in prompt
    assert "They chat about the topic: 'I teach math at a middle school.'" in prompt
    example = aspect.examples[choices["example"]]
    assert f"[PersonA]: {example['post']}\n[PersonB]: {example['response']}\n[PersonA]: ...\n[PersonB]: ..." in prompt
    for requirement in ("at most 30 words", "less than 60 words and 2 sentences", "doesn't ask questions",
                        "at least 4 turns", "repeat the verb", "ethical requirements"):
        assert requirement in prompt
    # Wordings and examples vary across draws.
    draws = {build_prompt(spec, {"attitude": "optimistic"}, "t", random.Random(s))[0] for s in range(20)}
    assert len(draws) > 5


def test_multi_attribute_prompt_concatenates_descriptions():
    spec = load_collection_spec()
    personality = {"language_style": "plain", "attitude": "pessimistic", "mental_characteristics": "critical"}
    prompt, choices = build_prompt(spec, personality, "I own a yacht.", random.Random(1))
    adjectives = [spec.aspect(a, n).adjective[choices[a]["adjective"]] for a, n in personality.items()]
    assert f"Write the multi-turn {adjectives[0]}, {adjectives[1]} and {adjectives[2]} dialogue" in prompt
    assert prompt.count("; ") >= 2 and "[PersonA]: ...\n[PersonB]: ..." in prompt
    assert not any(e["post"] in prompt for a, n in personality.items() for e in spec.aspect(a, n).examples)


def test_user_files_merge_validate_and_carry_a_custom_template(tmp_path, formality_file):
    spec = load_collection_spec(["default", str(formality_file)]).select(["formality", "attitude"])
    assert list(spec.attributes) == ["formality", "attitude"]
    custom = tmp_path / "custom.yaml"
    custom.write_text("template: 'Talk {adjective} about {topic}.{example}'\nattributes:\n  humour:\n"
                      "    dry: {manner: drily, character: wry, adjective: dry}\n"
                      "    playful: {manner: playfully, character: silly, adjective: [playful, cheeky]}\n", encoding="utf-8")
    spec = load_collection_spec(custom)
    assert build_prompt(spec, {"humour": "dry"}, "cats", random.Random(0))[0] == "Talk dry about cats."
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"attributes": {"humour": {"dry": {"manner": "drily", "character": "wry"},
                                                         "playful": {"manner": "x", "character": "y", "adjective": "z"}}}}))
    with pytest.raises(ValueError, match=r"humour.dry misses \['adjective'\]"):
        load_collection_spec(bad)
    with pytest.raises(ValueError, match="Unknown attribute"):
        load_collection_spec().select(["humour"])
    with pytest.raises(FileNotFoundError):
        load_collection_spec(tmp_path / "nope.yaml")


def test_plan_is_seeded_stable_under_growth_and_covers_topics(formality_file):
    spec = load_collection_spec(formality_file)
    topics = read_topics()
    assert len(topics) == 199
    items = plan_items(spec, topics, 5, seed=0)
    assert [i.key for i in items[:4]] == ["formality=casual#0", "formality=formal#0", "formality=casual#1", "formality=formal#1"]
    assert [(i.topic, i.prompt, i.seed) for i in items] == [(i.topic, i.prompt, i.seed) for i in plan_items(spec, topics, 5, seed=0)]
    grown = plan_items(spec, topics, 8, seed=0)
    assert [(i.key, i.topic, i.prompt) for i in grown[:len(items)]] == [(i.key, i.topic, i.prompt) for i in items]
    other = plan_items(spec, topics, 5, seed=1)
    assert [i.topic for i in other] != [i.topic for i in items]
    casual = [i.topic for i in plan_items(spec, topics, 199, seed=0) if i.personality == {"formality": "casual"}]
    assert sorted(casual) == sorted(topics)  # every topic once per cycle
    test_items = plan_items(load_collection_spec(), topics, 1, mode="test")
    assert len(test_items) == 8 and all(len(i.personality) == 3 for i in test_items)
    with pytest.raises(ValueError, match="valid: \\['train', 'test'\\]"):
        plan_items(spec, topics, 1, mode="dev")
