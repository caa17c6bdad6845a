"""Row-level rules of the MIRACLE corpus (paper appendix A.1/A.2), shared by the writers' self-check
and by ``check_corpus.py``."""

import re

MAX_USER_WORDS = 30
MAX_USER_SENTENCES = 2
MAX_ASSISTANT_WORDS = 59  # "less than 60 words"
MAX_ASSISTANT_SENTENCES = 2
MIN_ASSISTANT_WORDS = 5  # the paper drops sentences under five words
MIN_TURNS, MAX_TURNS = 2, 4

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=\S)")


def count_sentences(text: str) -> int:
    """Number of sentences: pieces separated by ., ! or ? followed by whitespace."""
    return len(_SENTENCE_END.split(text.strip()))


def count_words(text: str) -> int:
    return len(text.split())


def normalise(text: str) -> str:
    """Lower-cased alphanumerics only, for duplicate detection."""
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def turn_problems(user_turns, assistant_turns):
    """List of human-readable problems of one dialogue's turns (empty when it is valid)."""
    problems = []
    if not isinstance(user_turns, list) or not isinstance(assistant_turns, list):
        return ["input and output must be lists of strings"]
    if len(user_turns) != len(assistant_turns):
        problems.append(f"{len(user_turns)} user turns but {len(assistant_turns)} assistant turns")
    if not MIN_TURNS <= len(assistant_turns) <= MAX_TURNS:
        problems.append(f"{len(assistant_turns)} turns (allowed {MIN_TURNS}-{MAX_TURNS})")
    for i, turn in enumerate(user_turns):
        if not isinstance(turn, str) or not turn.strip():
            problems.append(f"user turn {i} is empty")
            continue
        if count_words(turn) > MAX_USER_WORDS:
            problems.append(f"user turn {i} has {count_words(turn)} words (max {MAX_USER_WORDS})")
        if count_sentences(turn) > MAX_USER_SENTENCES:
            problems.append(f"user turn {i} has {count_sentences(turn)} sentences (max {MAX_USER_SENTENCES})")
    for i, turn in enumerate(assistant_turns):
        if not isinstance(turn, str) or not turn.strip():
            problems.append(f"assistant turn {i} is empty")
            continue
        words = count_words(turn)
        if not MIN_ASSISTANT_WORDS <= words <= MAX_ASSISTANT_WORDS:
            problems.append(f"assistant turn {i} has {words} words (allowed {MIN_ASSISTANT_WORDS}-{MAX_ASSISTANT_WORDS})")
        if count_sentences(turn) > MAX_ASSISTANT_SENTENCES:
            problems.append(f"assistant turn {i} has {count_sentences(turn)} sentences (max {MAX_ASSISTANT_SENTENCES})")
        if "?" in turn:
            problems.append(f"assistant turn {i} contains a question mark")
    return problems
