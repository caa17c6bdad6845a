"""The flags of `miracle train`: MIRACLE's own groups (model, data, run), read without importing transformers, then
every `transformers.TrainingArguments` field, read by `HfArgumentParser` from what is left.

`miracle train --help` shows MIRACLE's groups and points to the Trainer's (at once); `--help-all` lists both in full
(it loads transformers, a few seconds).
"""

from __future__ import annotations

import argparse
import difflib
import textwrap

from .arguments import DataArguments, ModelArguments, RunArguments
from .dataclass_parser import DataclassArgumentParser, read_settings_file

PROG = "miracle train"
USAGE = f"{PROG} [MIRACLE options] --output_dir DIR [transformers.TrainingArguments options]\n       {PROG} FILE.json|FILE.yaml"
DESCRIPTION = "Train a MIRACLE model from backbones, or continue a saved one (a new attribute too)."
TRAINER_GROUP = "transformers.TrainingArguments"
# Named in the short help as examples; tests/test_train_parser.py checks that each is a TrainingArguments field.
COMMON_TRAINER_FLAGS = ("output_dir", "num_train_epochs", "max_steps", "learning_rate", "per_device_train_batch_size",
                        "gradient_accumulation_steps", "eval_strategy", "save_steps", "logging_steps", "seed",
                        "resume_from_checkpoint", "report_to", "push_to_hub", "hub_model_id")
EPILOG = f"{TRAINER_GROUP}:\n" + textwrap.fill(
    "Every field of transformers.TrainingArguments is a flag as well (after MIRACLE's), e.g. "
    + " ".join(f"--{name}" for name in COMMON_TRAINER_FLAGS)
    + f"; --output_dir is required. `{PROG} --help-all` lists them all with their help (it loads transformers: a "
    f"few seconds). A JSON or YAML file of the same flags works too: `{PROG} config.yaml`.",
    width=100, initial_indent="  ", subsequent_indent="  ", break_on_hyphens=False)
MIRACLE_ARGUMENTS = (ModelArguments, DataArguments, RunArguments)


class _HelpAll(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help=f"show MIRACLE's options and every {TRAINER_GROUP} option, then exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(full_parser(parser).format_help())
        parser.exit()


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def miracle_parser() -> DataclassArgumentParser:
    """MIRACLE's own flags of `miracle train` (no transformers needed)."""
    parser = DataclassArgumentParser(MIRACLE_ARGUMENTS, prog=PROG, usage=USAGE, description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=_Formatter)
    parser.add_argument("--help-all", action=_HelpAll)
    return parser


def trainer_parser(**kwargs):
    """`HfArgumentParser` of `TrainingArguments` (imports transformers)."""
    from transformers import HfArgumentParser, TrainingArguments

    return HfArgumentParser(TrainingArguments, prog=PROG, **kwargs)


def full_parser(miracle: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """MIRACLE's groups followed by a group of every TrainingArguments flag (for `--help-all`)."""
    from transformers import HfArgumentParser, TrainingArguments

    grouped = type("TrainingArguments", (TrainingArguments,), {"_argument_group_name": TRAINER_GROUP})
    trainer = HfArgumentParser(grouped, add_help=False)
    return argparse.ArgumentParser(prog=PROG, usage=USAGE, description=DESCRIPTION, parents=[miracle, trainer],
                                   add_help=False, formatter_class=_Formatter, allow_abbrev=False)


def _gives_output_dir(flags: list[str]) -> bool:
    return any(flag.split("=", 1)[0] in ("--output_dir", "--output-dir") for flag in flags)


def parse_train_arguments(argv: list[str]) -> tuple:
    """(ModelArguments, DataArguments, TrainingArguments, RunArguments) from the command line or from one JSON/YAML
    file. MIRACLE's flags, their combinations and a missing `--output_dir` are checked before transformers loads."""
    parser = miracle_parser()
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        settings = read_settings_file(argv[0], PROG)
        if not settings.get("output_dir"):
            parser.error(f"{argv[0]} must set `output_dir`, the folder the run writes its checkpoints and model to.")
        (model_args, data_args, run_args), rest = parser.parse_dict(settings, allow_extra_keys=True)
        model_args.check_flags()
        (training_args,) = trainer_parser().parse_dict(rest)
    else:
        (model_args, data_args, run_args), rest = parser.parse_known_into_dataclasses(argv)
        if not _gives_output_dir(rest):
            parser.error("--output_dir is required: the folder the run writes its checkpoints and model to.")
        model_args.check_flags()
        trainer = trainer_parser()
        training_args, unknown = trainer.parse_args_into_dataclasses(rest, return_remaining_strings=True,
                                                                     look_for_args_file=False)
        if unknown:
            parser.error(_unknown_flags_message(unknown, [parser, trainer]))
    return model_args, data_args, training_args, run_args


def _unknown_flags_message(unknown: list[str], parsers) -> str:
    known = [option for p in parsers for action in p._actions for option in action.option_strings]
    hints = []
    for flag in (u.split("=", 1)[0] for u in unknown if u.startswith("--")):
        close = difflib.get_close_matches(flag, known, n=1)
        if close:
            hints.append(f"{flag} -> {close[0]}?")
    return (f"unrecognized arguments: {' '.join(unknown)}" + (f" (did you mean {', '.join(hints)})" if hints else "")
            + f"; `{PROG} --help-all` lists every flag.")
