"""`miracle train`'s flags: MIRACLE's groups read without transformers, the Trainer's by HfArgumentParser."""

import dataclasses
import json
import re
import subprocess
import sys

import pytest
from transformers import HfArgumentParser, TrainingArguments

from modeling_miracle.commands.arguments import DataArguments, ModelArguments, RunArguments
from .conftest import run_cli_as_console_script
from modeling_miracle.commands.train_parser import COMMON_TRAINER_FLAGS, TRAINER_GROUP, parse_train_arguments


def test_help_groups_miracle_options_first_and_points_to_the_trainer_options_without_transformers(tmp_path):
    status, out, _, loaded = run_cli_as_console_script(["train", "--help"], tmp_path)
    assert (status, loaded) == (0, "[]")
    headings = [line[:-1] for line in out.splitlines() if re.fullmatch(r"[\w.]+:", line)]
    assert headings == ["options", "model", "data", "run", TRAINER_GROUP]
    for dtype in (ModelArguments, DataArguments, RunArguments):
        for field in dataclasses.fields(dtype):
            assert f"--{field.name}" in out
    assert "--help-all" in out and "--learning_rate" in out
    assert len(out.splitlines()) < 150  # the Trainer's ~120 options are not in it


def test_the_trainer_flags_named_in_the_help_exist():
    names = {field.name for field in dataclasses.fields(TrainingArguments)}
    assert set(COMMON_TRAINER_FLAGS) <= names


def test_help_all_lists_every_trainer_flag_after_miracles_groups(tmp_path):
    status, out, _, loaded = run_cli_as_console_script(["train", "--help-all"], tmp_path)
    assert (status, loaded) == (0, "['torch', 'transformers']")
    headings = [line[:-1] for line in out.splitlines() if re.fullmatch(r"[\w.]+:", line)]
    assert headings == ["options", "model", "data", "run", TRAINER_GROUP]
    trainer_part = out.split(f"\n{TRAINER_GROUP}:\n", 1)[1]
    for field in dataclasses.fields(TrainingArguments):
        if field.init:
            assert f"--{field.name}" in trainer_part


@pytest.mark.parametrize("argv, error", [
    (["train", "--lora_r", "x", "--output_dir", "o"], "--lora_r/--lora-r: invalid int value: 'x'"),
    (["train", "--lora"], "--output_dir is required"),
    (["train", "--add_attribute", "humour=dry,playful", "--output_dir", "o"], "give it with --from_model"),
    (["train", "--from_model", "x", "--encoder", "y", "--output_dir", "o"], "cannot be combined with --from_model"),
    (["collect", "--concurrency", "x", "--output_dir", "o"], "--concurrency: invalid int value: 'x'"),
    (["collect", "--mode", "fast", "--output_dir", "o"], "Unknown mode 'fast'; valid: ['train', 'test']"),
])
def test_mistakes_in_miracles_own_flags_are_reported_without_transformers(argv, error, tmp_path):
    status, _, err, loaded = run_cli_as_console_script(argv, tmp_path)
    assert (status, loaded) == (2, "[]")
    assert error in err and "Traceback" not in err


def _old_parse(argv):
    """How `miracle train` read its flags before: one HfArgumentParser over all four dataclasses."""
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments, RunArguments))
    return parser.parse_args_into_dataclasses(argv, look_for_args_file=False)


@pytest.mark.parametrize("argv", [
    ["--output_dir", "o", "--lora", "--freeze_backbones", "--max_steps", "5", "--learning_rate", "1e-4"],
    ["--max-steps", "5", "--data_files", "humour=a.jsonl", "humour=b.jsonl", "--report_to", "none",
     "--output-dir", "o", "--lora", "false", "--seed", "3", "--overwrite_output_dir"],
    ["--from_model", "m", "--add_attribute", "f=a,b", "--output_dir=o", "--no_train_head_only", "--use_cpu", "--lora"],
])
def test_flags_give_the_same_arguments_as_one_hf_argument_parser(argv):
    assert parse_train_arguments(argv) == _old_parse(argv)


def test_a_settings_file_gives_the_same_arguments_as_the_flags(tmp_path):
    settings = {"output_dir": str(tmp_path / "o"), "lora": True, "lora_r": 4, "max_steps": 7, "learning_rate": 0.001,
                "data_files": ["humour=a.jsonl"], "overwrite_output_dir": True}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(settings))
    argv = ["--output_dir", str(tmp_path / "o"), "--lora", "--lora_r", "4", "--max_steps", "7", "--learning_rate",
            "0.001", "--data_files", "humour=a.jsonl", "--overwrite_output_dir"]
    assert parse_train_arguments([str(path)]) == _old_parse(argv)
    path.write_text(json.dumps({**settings, "lerning_rate": 0.1}))
    with pytest.raises(ValueError, match="lerning_rate"):
        parse_train_arguments([str(path)])


def test_an_unknown_flag_is_named_with_the_closest_one(capsys):
    with pytest.raises(SystemExit) as exit:
        parse_train_arguments(["--output_dir", "o", "--lora_rr", "8", "--lerning_rate", "1"])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --lora_rr 8 --lerning_rate 1" in err
    assert "--lora_rr -> --lora_r?" in err and "--lerning_rate -> --learning_rate?" in err
