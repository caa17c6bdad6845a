"""The crash-safe ledger and the run-settings check."""

import json

import pytest

from modeling_miracle.collect.store import Ledger, check_run_settings


def test_ledger_appends_whole_lines_and_repairs_a_torn_tail(tmp_path):
    ledger = Ledger(tmp_path / "collected.jsonl")
    assert ledger.read() == []
    ledger.append({"key": "a", "reply": "x\ny"})
    ledger.append({"key": "b", "reply": "ü"})
    ledger.close()
    raw = (tmp_path / "collected.jsonl").read_bytes()
    assert raw.count(b"\n") == 2 and raw.endswith(b"\n")
    for torn in (b'{"key": "c", "re', b'{"key": "c"}'):  # cut mid-line, or cut just before the newline
        (tmp_path / "collected.jsonl").write_bytes(raw + torn)
        assert [r["key"] for r in Ledger(tmp_path / "collected.jsonl").read()] == ["a", "b"]
        assert (tmp_path / "collected.jsonl").read_bytes() == raw  # truncated, ready for appending
    ledger = Ledger(tmp_path / "collected.jsonl")
    ledger.append({"key": "c"})
    ledger.close()
    assert [r["key"] for r in Ledger(tmp_path / "collected.jsonl").read()] == ["a", "b", "c"]


def test_ledger_refuses_a_corrupt_middle_line(tmp_path):
    path = tmp_path / "collected.jsonl"
    path.write_text('{"key": "a"}\nnot json\n{"key": "b"}\n')
    with pytest.raises(ValueError, match="line 2: not valid JSON"):
        Ledger(path).read()


def test_run_settings_are_checked_on_resume_and_backends_recorded(tmp_path):
    settings = {"seed": 0, "mode": "train"}
    check_run_settings(tmp_path, settings, {"backend": "a"})
    record = check_run_settings(tmp_path, settings, {"backend": "b"})
    assert record["backends"] == [{"backend": "a"}, {"backend": "b"}]
    assert json.loads((tmp_path / "collect_run.json").read_text())["backends"] == record["backends"]
    moved = check_run_settings(tmp_path, {**settings, "topics_file": "elsewhere/topics.txt"}, {"backend": "a"})
    assert moved["settings"]["topics_file"] == "elsewhere/topics.txt"  # informational: no refusal
    with pytest.raises(ValueError, match="mode: 'train' before, 'test' now"):
        check_run_settings(tmp_path, {"seed": 0, "mode": "test"}, {"backend": "a"})
