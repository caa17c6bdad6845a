"""The packaged MIRACLE corpus (a data asset: JSONL files in the authors' format) and the tools that build and check it.

`CORPUS_DIR` is the folder of the shipped files; `read_jsonl` reads any of them (or a user's file in the same format).
"""

from __future__ import annotations

import json
from pathlib import Path

CORPUS_DIR = Path(__file__).resolve().parent


def read_jsonl(path: str | Path) -> list[dict]:
    """The rows of a JSON Lines file (UTF-8, one JSON value a line; blank lines are skipped)."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


__all__ = ["CORPUS_DIR", "read_jsonl"]
