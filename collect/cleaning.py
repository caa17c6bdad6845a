"""From an LLM reply to a training row: parse the `[PersonA]: ... [PersonB]: ...` text, then the cleaning of paper
appendix A.2 (each dropped dialogue is counted under one reason): format and length heuristics, near-duplicates,
an optional toxicity classifier and an optional aspect-score filter (the paper's classifier round)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from ..corpus.check_rules import (
    MAX_ASSISTANT_SENTENCES,
    MAX_ASSISTANT_WORDS,
    MAX_USER_SENTENCES,
    MAX_USER_WORDS,
    MIN_ASSISTANT_WORDS,
    count_sentences,
    count_words,
    normalise,
)

# Every reason a dialogue is dropped, in the order the checks run.
DROP_REASONS = (
    "unparseable", "too_few_turns", "overlong_turn", "short_response", "question_in_response", "near_duplicate",
    "toxic", "low_aspect_score",
)

# "[PersonA]:", "PersonA:", "**[PersonB]**:", "Person B :" ...
_MARKER = re.compile(r"[*_]*\[?\s*Person\s*([AB])\s*\]?[*_]*\s*:[*_]*", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"^[.\s…]*$")


def parse_dialogue(text: str) -> tuple[list[str], list[str]] | None:
    """(PersonA turns, PersonB turns) of a reply, or None when no complete exchange is found.

    Each turn is the first line after its marker. Parsing stops where speakers stop alternating; a last PersonA
    turn without an answer and any text around the dialogue are ignored.
    """
    markers = list(_MARKER.finditer(text or ""))
    turns = []
    for marker, following in zip(markers, markers[1:] + [None]):
        body = text[marker.end():following.start() if following else len(text)].strip()
        body = body.split("\n", 1)[0].strip().strip("*_").strip()
        if _PLACEHOLDER.match(body):  # the format's "[PersonA]: ..." placeholder copied back
            break
        turns.append((marker.group(1).upper(), body))
    user, assistant = [], []
    for position, (speaker, body) in enumerate(turns):
        if speaker != "AB"[position % 2]:
            break
        (user if speaker == "A" else assistant).append(body)
    user = user[:len(assistant)]
    return (user, assistant) if assistant else None


@dataclass
class CleaningConfig:
    """Thresholds of the cleaning (defaults: the paper's template requirements and appendix A.2)."""

    _argument_group_name = "cleaning"

    min_turns: int = field(default=4, metadata={"help": "Drop dialogues with fewer PersonB turns (requirement 4)."})
    max_user_words: int = field(default=MAX_USER_WORDS, metadata={"help": "Longest PersonA turn in words (requirement 1)."})
    max_user_sentences: int = MAX_USER_SENTENCES
    max_response_words: int = field(default=MAX_ASSISTANT_WORDS, metadata={"help": "Longest PersonB turn in words ('less than 60', requirement 2)."})
    max_response_sentences: int = MAX_ASSISTANT_SENTENCES
    min_response_words: int = field(default=MIN_ASSISTANT_WORDS, metadata={"help": "Drop dialogues with a shorter PersonB turn (appendix A.2)."})
    allow_questions: bool = field(default=False, metadata={"help": "Keep PersonB turns with a question mark (dropped by default, appendix A.2)."})
    near_duplicate_threshold: float = field(default=0.8, metadata={"help": "Word-3-gram Jaccard similarity from which a response counts as a near-duplicate (1.0: exact copies only)."})


@dataclass
class FilterConfig:
    """The optional classifier filters."""

    _argument_group_name = "filters"

    aspect_scorers: str | None = field(default=None, metadata={"help": "Folder of attribute scorers (<folder>/<attribute>/, as `miracle evaluate --scorers`); keeps dialogues whose target aspect scores >= --min-aspect-score. Missing scorers are trained there from this collection's held-out dialogues (the paper's classifier round)."})
    min_aspect_score: float = field(default=0.5, metadata={"help": "Lowest mean probability of the target aspect over a dialogue's responses."})
    scorer_epochs: float = field(default=3.0, metadata={"help": "Epochs for scorers trained here."})
    toxicity_model: str | None = field(default=None, metadata={"help": "Any Hugging Face text-classification model (path or Hub id) for the toxicity filter."})
    max_toxicity: float = field(default=0.5, metadata={"help": "Drop a dialogue when a turn's toxic-label score is above this."})
    toxic_labels: list[str] = field(default_factory=lambda: ["toxic"], metadata={"help": "Label name(s) of the toxicity model that mean toxic."})


def heuristic_problem(user: list[str], assistant: list[str], config: CleaningConfig) -> str | None:
    """The first drop reason of a parsed dialogue's heuristics, or None when it passes."""
    if len(assistant) < config.min_turns:
        return "too_few_turns"
    if any(count_words(t) > config.max_user_words or count_sentences(t) > config.max_user_sentences for t in user) or any(
            count_words(t) > config.max_response_words or count_sentences(t) > config.max_response_sentences for t in assistant):
        return "overlong_turn"
    if any(count_words(t) < config.min_response_words for t in assistant):
        return "short_response"
    if not config.allow_questions and any("?" in t for t in assistant):
        return "question_in_response"
    return None


class NearDuplicateIndex:
    """Responses seen so far; `is_duplicate(text)` when one has word n-gram Jaccard similarity >= `threshold`.

    Candidates are found through an inverted index of n-grams; n-grams shared by more than `max_postings` responses
    (stock phrases) are not used to find candidates, which keeps lookups fast on large corpora.
    """

    def __init__(self, threshold: float = 0.8, n: int = 3, max_postings: int = 200):
        self.threshold, self.n, self.max_postings = threshold, n, max_postings
        self._shingles: list[frozenset] = []
        self._postings: dict[tuple, list[int]] = {}
        self._exact: set[str] = set()

    def shingles(self, text: str) -> frozenset:
        words = normalise(text).split()
        return frozenset([tuple(words)] if len(words) < self.n else zip(*(words[i:] for i in range(self.n))))

    def similar(self, a: frozenset, b: frozenset) -> bool:
        return bool(a) and len(a & b) / len(a | b) >= self.threshold

    def is_duplicate(self, text: str) -> bool:
        if normalise(text) in self._exact:
            return True
        mine = self.shingles(text)
        shared = Counter(i for s in mine for i in self._postings.get(s, ())[:self.max_postings])
        return any(self.similar(mine, self._shingles[i]) for i, _ in shared.most_common())

    def add(self, text: str) -> None:
        self._exact.add(normalise(text))
        self._shingles.append(self.shingles(text))
        for s in self._shingles[-1]:
            self._postings.setdefault(s, []).append(len(self._shingles) - 1)

    def dialogue_is_duplicate(self, responses: list[str]) -> bool:
        """A response repeats one kept before, or one earlier in the same dialogue."""
        own = [self.shingles(t) for t in responses]
        return any(self.is_duplicate(t) for t in responses) or any(
            self.similar(own[i], own[j]) or normalise(responses[i]) == normalise(responses[j])
            for i in range(len(own)) for j in range(i))


class ToxicityFilter:
    """Any Hugging Face text-classification model: a dialogue is toxic when one of its turns scores above
    `threshold` on a label named in `toxic_labels` (case-insensitive)."""

    def __init__(self, model: str, threshold: float = 0.5, toxic_labels: tuple[str, ...] = ("toxic",),
                 batch_size: int = 32, device: str | None = None):
        from transformers import pipeline

        self.classifier = pipeline("text-classification", model=model, top_k=None, device=device)
        self.model, self.threshold, self.batch_size = model, threshold, batch_size
        self.toxic_labels = {label.lower() for label in toxic_labels}
        known = {label.lower() for label in self.classifier.model.config.id2label.values()}
        if not self.toxic_labels & known:
            raise ValueError(f"None of the toxic labels {sorted(self.toxic_labels)} is a label of {model}; its labels: "
                             f"{sorted(known)}. Pass the right ones with --toxic-labels.")

    def scores(self, texts: list[str]) -> list[float]:
        outputs = self.classifier(texts, batch_size=self.batch_size, truncation=True)
        return [max((o["score"] for o in out if o["label"].lower() in self.toxic_labels), default=0.0) for out in outputs]

    def toxic(self, dialogues: list[list[str]]) -> list[bool]:
        """For each dialogue (all its turns), whether it is toxic."""
        flat = [t for turns in dialogues for t in turns]
        scores = iter(self.scores(flat)) if flat else iter(())
        return [max((next(scores) for _ in turns), default=0.0) > self.threshold for turns in dialogues]


class AspectScoreFilter:
    """The paper's classifier round: per attribute, a text classifier (e.g. trained with `modeling_miracle.evaluation.scorers`) scores
    each response; a dialogue is kept when the mean probability of its target aspect is >= `threshold`."""

    def __init__(self, scorers: dict[str, str], attributes: dict[str, list[str]], threshold: float = 0.5):
        from ..evaluation.scorers import SequenceScorer

        self.threshold = threshold
        self.scorers = {a: SequenceScorer(path) for a, path in scorers.items()}
        self.columns = {}
        for attribute, scorer in self.scorers.items():
            labels = [scorer.model.config.id2label[i] for i in range(scorer.model.config.num_labels)]
            aspects = attributes[attribute]
            if len(labels) != len(aspects):
                raise ValueError(f"The {attribute} scorer {scorers[attribute]} has {len(labels)} labels {labels}; the "
                                 f"attribute has {len(aspects)} aspects {aspects}.")
            # Scorers saved with aspect names as labels are matched by name, others by position.
            self.columns[attribute] = [labels.index(a) if set(labels) == set(aspects) else i for i, a in enumerate(aspects)]

    def scores(self, responses: list[list[str]], targets: list[dict[str, int]]) -> list[float]:
        """For each dialogue, the lowest (over its scored attributes) mean probability of the target aspect."""
        result = [1.0] * len(responses)
        for attribute, scorer in self.scorers.items():
            rows = [i for i, target in enumerate(targets) if attribute in target]
            flat = [t for i in rows for t in responses[i]]
            probabilities = iter(scorer.predict_proba(flat)) if flat else iter(())
            for i in rows:
                column = self.columns[attribute][targets[i][attribute]]
                values = [next(probabilities)[column] for _ in responses[i]]
                result[i] = min(result[i], sum(values) / len(values))
        return result
