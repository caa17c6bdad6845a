"""Parsing `[PersonA]: ... [PersonB]: ...` replies and the appendix-A.2 cleaning rules."""

from modeling_miracle.collect import CleaningConfig, NearDuplicateIndex, parse_dialogue
from modeling_miracle.collect.cleaning import heuristic_problem

GOOD = ["I start early and finish before the heat of the afternoon.", "Mostly apples, though the pears did well this year.",
        "We sell them at the Saturday market in town.", "My brother helps me with the heavy crates."]
QUESTIONS = ["When do you start?", "What do you grow?", "Where do you sell?", "Who helps you?"]


def reply(users, responses, before="Sure! Here is the conversation:\n\n", after="\n\nI hope this helps."):
    return before + "\n".join(f"[PersonA]: {u}\n[PersonB]: {r}" for u, r in zip(users, responses)) + after


def test_parse_well_formed_reply_ignores_surrounding_text():
    assert parse_dialogue(reply(QUESTIONS, GOOD)) == (QUESTIONS, GOOD)


def test_parse_tolerates_marker_variants_and_stops_where_the_format_breaks():
    text = "**PersonA:** When do you start?\n**Person B**: Early, before the heat.\nPersonA: What do you grow?\n[PersonB]: Apples."
    assert parse_dialogue(text) == (["When do you start?", "What do you grow?"], ["Early, before the heat.", "Apples."])
    # A trailing unanswered question, the format's "..." placeholder and a repeated speaker end the dialogue.
    assert parse_dialogue("[PersonA]: Hi there\n[PersonB]: Hello to you.\n[PersonA]: And then") == (["Hi there"], ["Hello to you."])
    assert parse_dialogue("[PersonA]: Hi\n[PersonB]: Hello there.\n[PersonA]: ...\n[PersonB]: ...") == (["Hi"], ["Hello there."])
    assert parse_dialogue("[PersonA]: Hi\n[PersonB]: One.\n[PersonB]: Two.\n[PersonA]: Hm\n[PersonB]: Three.") == (["Hi"], ["One."])
    # Only the first line after a marker belongs to the turn (commentary after the dialogue is dropped).
    assert parse_dialogue("[PersonA]: Hi\n[PersonB]: Hello there.\nThis shows a positive attitude.")[1] == ["Hello there."]


def test_unparseable_replies():
    for text in ("I cannot help with that.", "", None, "[PersonB]: Hello there.\n[PersonA]: Hi", "[PersonA]: only a question"):
        assert parse_dialogue(text) is None


def test_heuristics_name_the_first_failing_rule():
    config = CleaningConfig()
    assert heuristic_problem(QUESTIONS, GOOD, config) is None
    assert heuristic_problem(QUESTIONS[:3], GOOD[:3], config) == "too_few_turns"
    assert heuristic_problem(QUESTIONS[:3], GOOD[:3], CleaningConfig(min_turns=3)) is None
    long_user = QUESTIONS[:3] + [" ".join(["word"] * 31) + "?"]
    assert heuristic_problem(long_user, GOOD, config) == "overlong_turn"
    assert heuristic_problem(QUESTIONS, GOOD[:3] + [" ".join(["word"] * 60) + "."], config) == "overlong_turn"
    assert heuristic_problem(QUESTIONS, GOOD[:3] + ["One. Two words. Three here."], config) == "overlong_turn"
    assert heuristic_problem(QUESTIONS, GOOD[:3] + ["Yes, sure."], config) == "short_response"
    assert heuristic_problem(QUESTIONS, GOOD[:3] + ["Have you ever tried picking them yourself?"], config) == "question_in_response"
    assert heuristic_problem(QUESTIONS, GOOD[:3] + ["Have you ever tried picking them yourself?"], CleaningConfig(allow_questions=True)) is None


def test_near_duplicates():
    index = NearDuplicateIndex(threshold=0.8)
    index.add("I start early and finish before the heat of the afternoon.")
    assert index.is_duplicate("i start EARLY, and finish before the heat of the afternoon")  # normalised copy
    assert index.is_duplicate("I start early and finish before the heat of the afternoon sun.")  # one word added
    assert not index.is_duplicate("We sell them at the Saturday market in town.")
    assert not index.is_duplicate("I start late and finish after dark, when the streets are quiet.")
    assert index.dialogue_is_duplicate(["Apples grow best in the north valley.", "Apples grow best in the north valley!"])
    assert not index.dialogue_is_duplicate(GOOD[1:])
    exact = NearDuplicateIndex(threshold=1.0)
    exact.add("I start early and finish before the heat of the afternoon.")
    assert not exact.is_duplicate("I start early and finish before the heat of the afternoon sun.")
