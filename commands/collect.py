r"""`miracle collect`: the paper's single-aspect dialogue collection (section 3.2, appendix A) with any chat LLM.

    miracle collect --output-dir data/mine --base-url http://localhost:8080/v1 --model my-model --dialogues-per-aspect 200
    miracle collect --output-dir data/formality --attributes-file formality.yaml --base-url https://api.openai.com/v1 \
        --model gpt-4o-mini --api-key-env OPENAI_API_KEY --concurrency 8
    miracle collect --output-dir data/local --backend local --dialogues-per-aspect 2     # the packaged SmolLM2
    miracle collect --output-dir data/test --mode test --dialogues-per-aspect 25 ...     # multi-attribute test set
    miracle collect collect.yaml                                                         # the same flags from a file

Rerun the same command to resume after a crash or a kill, or to rebuild the dataset with other cleaning settings.
"""

from __future__ import annotations

import sys


def build_parser():
    """The flags of `miracle collect` (no transformers needed: help and mistakes come at once)."""
    import argparse

    from ..collect.cleaning import CleaningConfig, FilterConfig
    from ..collect.config import BackendArguments, CollectConfig
    from .dataclass_parser import DataclassArgumentParser

    class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
        pass

    return DataclassArgumentParser((CollectConfig, BackendArguments, CleaningConfig, FilterConfig),
                                   prog="miracle collect", description=__doc__, formatter_class=Formatter)


def main(argv: list[str] | None = None) -> int:
    from .dataclass_parser import read_settings_file

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        (config, backend_args, cleaning, filters), _ = parser.parse_dict(read_settings_file(argv[0], parser.prog))
    else:
        config, backend_args, cleaning, filters = parser.parse_args_into_dataclasses(argv)
    from ..collect.backends import FatalBackendError
    from ..collect.runner import collect

    try:
        report = collect(config, backend_args.build(), cleaning, filters)
    except FatalBackendError as error:
        print(f"miracle collect stopped: {error}", file=sys.stderr)
        print(f"What arrived before is kept in {config.output_dir}; rerun to resume.", file=sys.stderr)
        return 1
    print(report.table())
    print()
    print(report.drop_table())
    if report.retries:
        print(f"\nRetries: {report.retries}")
    if report.files:
        print(f"\nWrote {', '.join(report.files)} and README.md (data card) to {config.output_dir}")
    else:
        print(f"\nNo dialogues were kept: no data files written; README.md (data card) in {config.output_dir}")
    if report.requests_this_run and report.failed_this_run == report.requests_this_run:
        print(f"miracle collect: every request of this run failed ({report.failed_this_run}); see "
              f"{config.output_dir}/failures.jsonl for the errors.", file=sys.stderr)
        return 1
    return 0
