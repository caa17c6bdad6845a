"""Turning the accepted conversation forms into validated lists of chat messages."""

from __future__ import annotations

VALID_ROLES = ("system", "user", "assistant")


def _is_message(item) -> bool:
    return isinstance(item, dict) and "role" in item and "content" in item


def normalize_conversation(conversation) -> list[dict]:
    """One conversation -> a list of `{"role", "content"}` messages ending with a user turn.

    Accepts a string (one user turn), a list of strings (alternating user/assistant turns, starting and ending
    with the user), or a list of chat messages with roles "system", "user" or "assistant".
    """
    if isinstance(conversation, str):
        conversation = [conversation]
    if not isinstance(conversation, (list, tuple)) or len(conversation) == 0:
        raise ValueError(
            "A conversation must be a non-empty string, list of turns or list of chat messages "
            f"({{'role': one of {list(VALID_ROLES)}, 'content': str}}); got {conversation!r}."
        )
    if all(isinstance(turn, str) for turn in conversation):
        messages = [
            {"role": "user" if index % 2 == 0 else "assistant", "content": turn}
            for index, turn in enumerate(conversation)
        ]
    elif all(_is_message(turn) for turn in conversation):
        messages = [{"role": turn["role"], "content": turn["content"]} for turn in conversation]
    else:
        raise ValueError(
            "A conversation must be all strings (alternating user/assistant turns) or all chat messages "
            f"(dicts with 'role' and 'content'); got {conversation!r}."
        )
    for message in messages:
        if message["role"] not in VALID_ROLES:
            raise ValueError(f"Unknown role {message['role']!r}; valid roles: {list(VALID_ROLES)}.")
        if not isinstance(message["content"], str) or not message["content"].strip():
            raise ValueError(f"Empty or non-string message content in {message!r}.")
    dialogue = [m for m in messages if m["role"] != "system"]
    if not dialogue:
        raise ValueError("A conversation needs at least one user turn; got only system messages.")
    if dialogue[-1]["role"] != "user":
        raise ValueError(
            "A conversation must end with a user turn (the model answers it); the last turn has role "
            f"{dialogue[-1]['role']!r}."
        )
    return messages


def is_single_conversation(inputs) -> bool:
    """True when `inputs` is one conversation (a string, a list of strings, or a list of messages)."""
    if isinstance(inputs, str):
        return True
    if isinstance(inputs, (list, tuple)) and inputs:
        return all(isinstance(x, str) for x in inputs) or all(_is_message(x) for x in inputs)
    return False


def normalize_conversations(inputs) -> tuple[list[list[dict]], bool]:
    """One conversation or a list of them -> (list of message lists, whether the input was a batch)."""
    if is_single_conversation(inputs):
        return [normalize_conversation(inputs)], False
    if not isinstance(inputs, (list, tuple)) or len(inputs) == 0:
        raise ValueError(f"Expected a conversation or a non-empty list of conversations; got {inputs!r}.")
    return [normalize_conversation(conversation) for conversation in inputs], True
