"""Loading MIRACLE training data with `datasets`: the authors' JSONL format, locally or from a Hub dataset.

One JSONL file per attribute, rows `{"input": [user turns], "output": [assistant turns], "personas": str,
"tag": int | aspect name}`. Files of several attributes combine into one multi-attribute set with one example per
assistant turn: the conversation up to that turn's user message, the response, the attribute's index in the
model config and the aspect's index.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import datasets

from ..corpus import CORPUS_DIR, dialogue_examples

# The authors' corpus on the Hub (unreachable offline; same code path as local files).
AUTHORS_HUB_DATASET = "lu-vae/Miracle-Conversation"
AUTHORS_HUB_FILES = {
    "language_style": "dialogue_l.raw.jsonl",
    "attitude": "dialogue_a.raw.jsonl",
    "mental_characteristics": "dialogue_m.raw.jsonl",
}


class MalformedRowError(ValueError):
    """A data row that does not fit the format or the model config; names the file and line."""


def corpus_files(split: str = "train") -> dict[str, str]:
    """The packaged corpus's dialogue files for `split` (train / validation / test / heldout), per attribute."""
    files = {a: CORPUS_DIR / f"dialogue_{a}.{split}.jsonl" for a in AUTHORS_HUB_FILES}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"No packaged corpus split {split!r}: missing {missing}.")
    return {a: str(p) for a, p in files.items()}


def resolve_file(path_or_name: str, hub_dataset: str | None = None, revision: str | None = None) -> str:
    """A local path as is; otherwise `path_or_name` inside the Hub dataset repository `hub_dataset` (downloaded)."""
    if hub_dataset is None:
        if not os.path.isfile(path_or_name):
            raise FileNotFoundError(f"Data file {path_or_name!r} does not exist (give a local path, or `hub_dataset=`).")
        return path_or_name
    from huggingface_hub import hf_hub_download

    return hf_hub_download(hub_dataset, path_or_name, repo_type="dataset", revision=revision)


@dataclass
class LoadReport:
    """What loading kept and skipped."""

    examples: int = 0
    dialogues: int = 0
    skipped_rows: int = 0
    rows: int = 0
    dialogues_per_attribute: dict[str, int] = field(default_factory=dict)


def _row_problem(row, aspects: list[str]) -> str | None:
    if not isinstance(row, dict):
        return "row is not a JSON object"
    inputs, outputs = row.get("input"), row.get("output")
    if not isinstance(inputs, list) or not isinstance(outputs, list) or not inputs:
        return "`input` and `output` must be non-empty lists of strings"
    if len(inputs) != len(outputs):
        return f"{len(inputs)} input turns but {len(outputs)} output turns"
    if any(not isinstance(t, str) or not t.strip() for t in inputs + outputs):
        return "empty or non-string turn"
    tag = row.get("tag")
    if isinstance(tag, bool) or not (isinstance(tag, int) and 0 <= tag < len(aspects) or tag in aspects):
        return f"unknown tag {tag!r}; valid: 0..{len(aspects) - 1} or one of {aspects}"
    return None


# Byte-order marks of encodings a JSONL file must not be in (JSON Lines is UTF-8).
_WRONG_ENCODING_MARKS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
                         (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))


def _check_encoding(path: str, head: bytes) -> None:
    """Refuse, naming the file, files in UTF-16 / UTF-32 (every row would be unreadable)."""
    encoding = next((name for mark, name in _WRONG_ENCODING_MARKS if head.startswith(mark)), None)
    if encoding is None and b"\x00" in head:
        encoding = "UTF-16 or UTF-32 (it holds NUL bytes)"
    if encoding:
        raise MalformedRowError(
            f"{path} is encoded as {encoding}; JSONL data files must be UTF-8. Re-save it as UTF-8 (e.g. "
            f"`iconv -f UTF-16 -t UTF-8 {os.path.basename(path)}`)."
        )


def read_dialogues(path: str, attribute: str, aspects: list[str], skip_malformed: bool, report: LoadReport) -> list[dict]:
    """Validated dialogue rows of one attribute file (with `aspect_id`); malformed rows raise or are counted.

    The file must be UTF-8 (a leading byte-order mark is fine); a UTF-16 / UTF-32 file is refused, and a line that is
    not UTF-8 (say Latin-1 text) is a malformed row named with its file and line.
    """
    rows = []
    with open(path, "rb") as handle:
        _check_encoding(path, handle.read(4096))
        handle.seek(0)
        for line_number, raw in enumerate(handle, 1):
            if line_number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # UTF-8 byte-order mark
            if not raw.strip():
                continue
            report.rows += 1
            row = None
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                problem = (f"not UTF-8 text (byte 0x{raw[error.start]:02x} at column {error.start + 1}; Latin-1 or "
                           "Windows-1252 perhaps): re-save the file as UTF-8")
            else:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    problem = f"invalid JSON ({error.msg})"
                else:
                    problem = _row_problem(row, aspects)
            if problem:
                if skip_malformed:
                    report.skipped_rows += 1
                    continue
                raise MalformedRowError(
                    f"{path}, line {line_number} ({attribute}): {problem}. Fix the row or pass skip_malformed=True."
                )
            tag = row["tag"]
            rows.append({**row, "aspect_id": tag if isinstance(tag, int) else aspects.index(tag)})
    return rows


def load_miracle_dataset(
    data_files: dict[str, str | list[str]],
    attributes: dict[str, list[str]],
    hub_dataset: str | None = None,
    revision: str | None = None,
    skip_malformed: bool = False,
    expand_prefixes: bool = True,
    max_dialogues_per_attribute: int | None = None,
    report: LoadReport | None = None,
) -> datasets.Dataset:
    """Combine per-attribute files into one `datasets.Dataset` of examples for MIRACLE training.

    Args:
        data_files: attribute name -> file (or list of files), local paths or names inside `hub_dataset`.
        attributes: the model config's ordered attribute -> aspects mapping (gives attribute and aspect indices).
        hub_dataset: a Hub dataset repository holding the files (e.g. `lu-vae/Miracle-Conversation`).
        skip_malformed: skip malformed rows (their count is in `report.skipped_rows`) instead of raising.
        expand_prefixes: one example per assistant turn (True) or per dialogue's last turn.
        max_dialogues_per_attribute: keep only the first N dialogues of each attribute (quick runs).

    Returns:
        A dataset with columns `messages`, `response`, `attribute_id`, `aspect_id`.
    """
    report = report if report is not None else LoadReport()
    if max_dialogues_per_attribute is not None and (
        isinstance(max_dialogues_per_attribute, bool) or not isinstance(max_dialogues_per_attribute, int)
        or max_dialogues_per_attribute < 1
    ):
        raise ValueError(f"`max_dialogues_per_attribute` must be an integer >= 1 or None (all); got "
                         f"{max_dialogues_per_attribute!r}.")
    unknown = [a for a in data_files if a not in attributes]
    if unknown:
        raise ValueError(f"Data for attribute(s) {unknown} that the model config does not have; config attributes: "
                         f"{list(attributes)}. Add them with `model.add_attribute(name, aspects)` first.")
    examples = []
    for attribute, files in data_files.items():
        files = [files] if isinstance(files, (str, os.PathLike)) else list(files)
        attribute_id = list(attributes).index(attribute)
        dialogues = []
        for file in files:
            path = resolve_file(str(file), hub_dataset, revision)
            dialogues += read_dialogues(path, attribute, attributes[attribute], skip_malformed, report)
        dialogues = dialogues[:max_dialogues_per_attribute]
        report.dialogues += len(dialogues)
        report.dialogues_per_attribute[attribute] = report.dialogues_per_attribute.get(attribute, 0) + len(dialogues)
        for row in dialogues:
            examples += dialogue_examples(row, attribute_id, expand_prefixes)
    if not examples:
        why = (f"all {report.rows} rows were skipped as malformed" if report.rows and report.skipped_rows == report.rows
               else f"{report.rows} rows read, {report.skipped_rows} skipped as malformed")
        raise ValueError(f"No usable examples in {data_files}: {why}.")
    report.examples = len(examples)
    return datasets.Dataset.from_list(examples)
