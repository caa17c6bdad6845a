"""The packaged MIRACLE corpus (a data asset: JSONL files in the authors' format) and the tools that build and check it.

`CORPUS_DIR` is the folder of the shipped files; `read_jsonl` reads any of them (or a user's file in the same format),
`dialogue_examples` turns one dialogue row into one chat example per assistant turn.
"""

from __future__ import annotations

import json
from pathlib import Path

CORPUS_DIR = Path(__file__).resolve().parent


def read_jsonl(path: str | Path) -> list[dict]:
    """The rows of a JSON Lines file (UTF-8, one JSON value a line; blank lines are skipped)."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def dialogue_examples(row: dict, attribute_id: int, expand_prefixes: bool = True) -> list[dict]:
    """One example per assistant turn (or only the last one): chat messages up to the user turn + the response."""
    turns = range(len(row["output"])) if expand_prefixes else [len(row["output"]) - 1]
    examples = []
    for k in turns:
        messages = []
        for user, assistant in zip(row["input"][:k], row["output"][:k]):
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        messages.append({"role": "user", "content": row["input"][k]})
        examples.append({"messages": messages, "response": row["output"][k], "attribute_id": attribute_id,
                         "aspect_id": row["aspect_id"]})
    return examples


__all__ = ["CORPUS_DIR", "dialogue_examples", "read_jsonl"]
