"""`DataclassArgumentParser` reads MIRACLE's dataclasses as `HfArgumentParser` does, without transformers."""

import argparse
import dataclasses
from typing import Literal

import pytest
from transformers import HfArgumentParser

from modeling_miracle.collect.cleaning import CleaningConfig, FilterConfig
from modeling_miracle.collect.config import BackendArguments, CollectConfig
from modeling_miracle.commands.arguments import DataArguments, ModelArguments, RunArguments
from modeling_miracle.commands.dataclass_parser import DataclassArgumentParser

COMMAND_DATACLASSES = {
    "train": (ModelArguments, DataArguments, RunArguments),
    "collect": (CollectConfig, BackendArguments, CleaningConfig, FilterConfig),
}


def _flags(parser: argparse.ArgumentParser) -> dict:
    return {
        action.dest + ("(negated)" if isinstance(action, argparse._StoreFalseAction) else ""): (
            tuple(action.option_strings), action.default, action.nargs, action.const, action.required, action.help,
            tuple(action.choices) if action.choices else None)
        for action in parser._actions if not isinstance(action, argparse._HelpAction)
    }


@pytest.mark.parametrize("command", COMMAND_DATACLASSES)
def test_the_same_flags_as_hf_argument_parser(command):
    ours = DataclassArgumentParser(COMMAND_DATACLASSES[command])
    theirs = HfArgumentParser(COMMAND_DATACLASSES[command])
    assert _flags(ours) == _flags(theirs)


TRAIN_ARGVS = [
    [],
    ["--lora", "--freeze_backbones", "--lora_r", "8", "--data_files", "humour=a.jsonl", "humour=b.jsonl"],
    ["--lora", "false", "--no_train_head_only", "--from-model", "runs/x", "--add-attribute", "f=a,b"],
    ["--expand_prefixes", "no", "--max_dialogues_per_attribute", "3", "--decoder_history_dropout", "0.25",
     "--overwrite-output-dir", "--miracle_config", '{"latent_size": 8}'],
]


@pytest.mark.parametrize("argv", TRAIN_ARGVS)
def test_train_flags_parse_to_the_same_dataclasses(argv):
    dataclass_types = COMMAND_DATACLASSES["train"]
    assert DataclassArgumentParser(dataclass_types).parse_args_into_dataclasses(argv) == \
        HfArgumentParser(dataclass_types).parse_args_into_dataclasses(argv, look_for_args_file=False)


def test_collect_flags_parse_to_the_same_dataclasses():
    argv = ["--output_dir", "out", "--only", "humour", "--split-fractions", "0.7", "0.1", "0.2", "--no_progress",
            "--backend", "local", "--temperature", "0", "--allow_questions", "--toxic_labels", "toxic", "insult"]
    dataclass_types = COMMAND_DATACLASSES["collect"]
    assert DataclassArgumentParser(dataclass_types).parse_args_into_dataclasses(argv) == \
        HfArgumentParser(dataclass_types).parse_args_into_dataclasses(argv, look_for_args_file=False)


@dataclasses.dataclass
class Example:
    """An example group."""

    _argument_group_name = "example"

    name: str
    mode: Literal["fast", "slow"] = "fast"
    verbose: bool = True
    sizes: list[int] = dataclasses.field(default_factory=lambda: [1])


def test_types_choices_booleans_and_required_fields():
    parser = DataclassArgumentParser([Example], prog="x")
    (example,) = parser.parse_args_into_dataclasses(["--name", "n", "--mode", "slow", "--sizes", "2", "3",
                                                     "--verbose", "n"])
    assert example == Example("n", "slow", False, [2, 3])
    assert parser.parse_args_into_dataclasses(["--name", "n", "--no-verbose"])[0].verbose is False
    assert parser.parse_args_into_dataclasses(["--name", "n", "--verbose"])[0].verbose is True
    for bad in (["--mode", "slow"], ["--name", "n", "--mode", "medium"], ["--name", "n", "--verbose", "maybe"],
                ["--name", "n", "--sizes", "two"]):
        with pytest.raises(SystemExit) as exit:
            parser.parse_args_into_dataclasses(bad)
        assert exit.value.code == 2
    assert "example:\n  An example group." in parser.format_help()


def test_unknown_flags_are_left_for_another_parser_and_never_abbreviations_of_ours():
    parser = DataclassArgumentParser([Example])
    (example,), rest = parser.parse_known_into_dataclasses(["--name", "n", "--learning_rate", "1e-4", "--mod", "x",
                                                            "--sizes", "4", "--report_to", "none"])
    assert example == Example("n", sizes=[4])
    assert rest == ["--learning_rate", "1e-4", "--mod", "x", "--report_to", "none"]


def test_a_mapping_is_read_and_unknown_keys_are_named():
    parser = DataclassArgumentParser([Example])
    (example,), extra = parser.parse_dict({"name": "n", "learning_rate": 0.1}, allow_extra_keys=True)
    assert example == Example("n") and extra == {"learning_rate": 0.1}
    with pytest.raises(ValueError, match=r"Unknown settings \['nmae'\]; valid: \['mode', 'name', 'sizes', 'verbose'\]"):
        parser.parse_dict({"nmae": "n"})
