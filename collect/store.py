"""Crash-safe storage of a collection run: an append-only JSONL ledger of every reply received (one line per
finished work item, flushed and fsync'ed), the failures log, and the run settings that a resume must match."""

from __future__ import annotations

import json
import os
from pathlib import Path

LEDGER_FILE = "collected.jsonl"
FAILURES_FILE = "failures.jsonl"
RUN_FILE = "collect_run.json"
# Settings recorded for the data card that may change between runs without changing the plan (a moved topics file,
# a reworded description: finished items keep their replies, the rest use the new wordings).
INFORMATIONAL_SETTINGS = {"topics_file", "attributes_fingerprint"}


class Ledger:
    """An append-only JSONL file. `read()` repairs a torn last line (a write cut short by a kill) by truncating it;
    `append()` writes one complete line, flushes and fsyncs before returning."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._handle = None

    def read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        data = self.path.read_bytes()
        records, good_end = [], 0
        for line_number, line in enumerate(data.split(b"\n"), 1):
            end = good_end + len(line) + 1
            if not line.strip():
                good_end = min(end, len(data))
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if end >= len(data):  # the last line, cut short: drop it
                    break
                raise ValueError(f"{self.path}, line {line_number}: not valid JSON (edited by hand?).") from None
            if end > len(data):  # a complete JSON value but no newline: also a torn write
                break
            records.append(record)
            good_end = end
        if good_end < len(data):
            with open(self.path, "r+b") as handle:
                handle.truncate(good_end)
        return records

    def append(self, record: dict) -> None:
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", encoding="utf-8")
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a whole file through a temporary file and a rename: readers never see half a file."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def write_jsonl(path: str | os.PathLike, rows: list[dict]) -> None:
    write_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def check_run_settings(output_dir: Path, settings: dict, backend: dict) -> dict:
    """Record the plan's settings on the first run; on a resume, refuse settings that would change the plan.

    Returns the run record (with every backend used so far, for the data card).
    """
    path = output_dir / RUN_FILE
    if path.is_file():
        record = json.loads(path.read_text(encoding="utf-8"))
        changed = {k: (record["settings"].get(k), v) for k, v in settings.items()
                   if k not in INFORMATIONAL_SETTINGS and record["settings"].get(k) != v}
        if changed:
            details = "; ".join(f"{k}: {old!r} before, {new!r} now" for k, (old, new) in changed.items())
            raise ValueError(f"{output_dir} holds a collection made with other settings ({details}). Resume with the "
                             f"same settings, or collect into a new --output-dir.")
        record["settings"].update({k: settings[k] for k in INFORMATIONAL_SETTINGS if k in settings})
    else:
        record = {"settings": settings, "backends": []}
    if backend not in record["backends"]:
        record["backends"].append(backend)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(record, indent=2) + "\n")
    return record
