"""The `miracle` command-line program.

    miracle train --encoder default --decoder default --output-dir runs/mine --max-steps 200
    miracle train config.yaml                       # the same flags from a JSON/YAML file
    miracle train --from-model runs/mine --add-attribute humour=dry,playful --data-files humour=humour.jsonl ...
    miracle generate --personality attitude=optimistic "What do you do on weekends?"
    miracle demo
    miracle evaluate --model runs/mine --output-dir runs/eval
    miracle collect --output-dir data/mine --base-url http://localhost:8080/v1 --dialogues-per-aspect 200
    miracle serve --port 8000                       # OpenAI-compatible chat completions
    miracle web                                     # the Gradio demo in your browser

`miracle train` runs unchanged under `accelerate launch` (e.g. `accelerate launch -m modeling_miracle.commands.cli train ...`).
"""

from __future__ import annotations

import argparse
import sys


def _train(argv: list[str]) -> int:
    from transformers import HfArgumentParser, TrainingArguments

    from .arguments import DataArguments, ModelArguments, RunArguments
    from .train import run_train

    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments, RunArguments), prog="miracle train")
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        settings = _read_settings_file(argv[0])
        if not settings.get("output_dir"):
            parser.error(f"{argv[0]} must set `output_dir`, the folder the run writes its checkpoints and model to.")
        args = parser.parse_dict(settings)
    else:
        namespace, _ = parser.parse_known_args(argv)
        if not namespace.output_dir:
            parser.error("--output_dir is required: the folder the run writes its checkpoints and model to.")
        args = parser.parse_args_into_dataclasses(argv)
    run_train(*args)
    return 0


def _read_settings_file(path: str) -> dict:
    """The flags of `miracle train` from a JSON or YAML file."""
    import json
    from pathlib import Path

    text = Path(path).read_text(encoding="utf-8")
    if path.endswith(".json"):
        settings = json.loads(text)
    else:
        import yaml

        settings = yaml.safe_load(text)
    if not isinstance(settings, dict):
        raise SystemExit(f"{path} must hold a mapping of `miracle train` flags to values.")
    return settings


def _key_values(pairs: list[str], what: str, cast=str) -> dict:
    from .arguments import split_pair

    out = {}
    for pair in pairs or []:
        key, value = split_pair(pair, f"--{what}", "attribute=value", error=SystemExit)
        out[key] = cast(value)
    return out


PAIR_FLAGS = ("--personality", "--weight")


def _looks_like_pair(token: str) -> bool:
    """`attribute=value` (no spaces in the attribute name), as opposed to a conversation turn."""
    key, sep, value = token.partition("=")
    return bool(sep and key and value) and not key.startswith("-") and not any(c.isspace() for c in key)


def _one_pair_per_flag(argv: list[str]) -> list[str]:
    """`--personality a=x b=y "turn"` -> `--personality a=x --personality b=y "turn"`: a pair flag takes the
    `attribute=value` tokens after it and leaves the conversation turns alone."""
    out, i = [], 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            return out + argv[i:]
        if token not in PAIR_FLAGS:
            out.append(token)
            i += 1
            continue
        i += 1
        start = i
        while i < len(argv) and _looks_like_pair(argv[i]):
            out += [token, argv[i]]
            i += 1
        if i == start:
            found = repr(argv[i]) if i < len(argv) else "nothing"
            raise SystemExit(f"{token} takes attribute=value pairs (e.g. {token} attitude=optimistic); got {found}.")
    return out


def _add_generation_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="A saved MIRACLE model folder or Hub id (default: the packaged default model).")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--no-ebm", action="store_true", help="Skip EBM sampling (the paper's 'w/o EBM').")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--guidance-scale", type=float, default=None,
                        help="Decoding-time latent guidance strength (default: the model config's; 0 = off).")
    parser.add_argument("--guidance-plausibility", type=float, default=None,
                        help="With guidance: rule out tokens below this share of the top token's probability (default: the config's).")


def generation_options(args) -> dict:
    """Pipeline call arguments from the shared generation flags."""
    options = {"use_ebm": not args.no_ebm, "max_new_tokens": args.max_new_tokens}
    if args.guidance_scale is not None:
        options["latent_guidance_scale"] = args.guidance_scale
    if args.guidance_plausibility is not None:
        options["latent_guidance_plausibility"] = args.guidance_plausibility
    return options


def _generate(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="miracle generate", description="Personalized responses to your own context.")
    parser.add_argument("turns", nargs="+", help="Conversation turns, alternating user/assistant, ending with the user.")
    parser.add_argument("--personality", action="append", default=[], metavar="ATTRIBUTE=ASPECT",
                        help="attribute=aspect pairs, e.g. --personality attitude=optimistic language_style=lyrical")
    parser.add_argument("--weight", action="append", default=[], metavar="ATTRIBUTE=WEIGHT",
                        help="attribute=weight pairs (default 1)")
    parser.add_argument("--num-return-sequences", type=int, default=1)
    parser.add_argument("--do-sample", action="store_true")
    _add_generation_flags(parser)
    args = parser.parse_args(_one_pair_per_flag(argv))
    import torch
    import transformers
    from transformers import pipeline

    from .. import load_model_and_processor

    print(f"Loading {args.model or 'the packaged default model'} ...", file=sys.stderr, flush=True)
    model, processor = load_model_and_processor(args.model)
    chat = pipeline("personalized-dialogue", model=model, processor=processor)
    torch.manual_seed(args.seed)
    # One reply is printed as it is written; several come together at the end.
    streamer = transformers.TextStreamer(processor.decoder_tokenizer, skip_prompt=True, skip_special_tokens=True) \
        if args.num_return_sequences == 1 else None
    outputs = chat(
        args.turns,
        personality=_key_values(args.personality, "personality") or None,
        attribute_weights=_key_values(args.weight, "weight", float) or None,
        **generation_options(args),
        num_return_sequences=args.num_return_sequences,
        do_sample=args.do_sample,
        return_latent_diagnostics=True,
        **({"streamer": streamer} if streamer else {}),
    )
    for output in outputs:
        if streamer is None:
            print(output["generated_text"])
        for attribute, d in output.get("latent_diagnostics", {}).items():
            print(f"  {attribute}={d['aspect']}: latent probability {d['before']:.2f} -> {d['after']:.2f}")
    return 0


def _demo(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="miracle demo", description="All 8 personalities on corpus test contexts.")
    parser.add_argument("--contexts", type=int, default=2, help="How many test contexts to show.")
    _add_generation_flags(parser)
    args = parser.parse_args(argv)
    from .demo import run_demo

    run_demo(args.model, args.contexts, seed=args.seed, **generation_options(args))
    return 0


def _evaluate(argv: list[str]) -> int:
    from .evaluate import main as evaluate_main

    return evaluate_main(argv)


def _collect(argv: list[str]) -> int:
    from .collect import main as collect_main

    return collect_main(argv)


def _serve(argv: list[str]) -> int:
    from .serve import main as serve_main

    return serve_main(argv)


def _web(argv: list[str]) -> int:
    from .web import main as web_main

    return web_main(argv)


COMMANDS = {"train": _train, "generate": _generate, "demo": _demo, "evaluate": _evaluate, "collect": _collect,
            "serve": _serve, "web": _web}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__)
        print(f"commands: {', '.join(COMMANDS)}")
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
