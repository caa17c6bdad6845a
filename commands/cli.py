"""The `miracle` command-line program.

    miracle train --encoder default --decoder default --lora --freeze_backbones --output-dir runs/mine --max-steps 200
    miracle train --from_model default --output-dir runs/more --max-steps 100   # continue the shipped model (LoRA)
    miracle train config.yaml                       # the same flags from a JSON/YAML file
    miracle train --from-model runs/mine --add-attribute humour=dry,playful --data-files humour=humour.jsonl ...
    miracle generate --personality attitude=optimistic "What do you do on weekends?"
    miracle demo
    miracle evaluate --model runs/mine --output-dir runs/eval
    miracle collect --output-dir data/mine --base-url http://localhost:8080/v1 --dialogues-per-aspect 200
    miracle serve --port 8000                       # OpenAI-compatible chat completions
    miracle web                                     # the Gradio demo in your browser

`miracle train` runs unchanged under `accelerate launch` (e.g. `accelerate launch -m modeling_miracle.commands.cli train ...`).
`--lora --freeze_backbones` trains ~1 % of the default model's parameters (a laptop can); without them all 190.7 M
parameters train (7 GB of memory). A mistake prints one line and exits with status 2; add `--debug` (or set
MIRACLE_DEBUG=1) to see the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from importlib import import_module

from .model_path import UsageError, resolve_model


def _train(argv: list[str]) -> int:
    from .train_parser import parse_train_arguments

    arguments = parse_train_arguments(argv)
    from .train import run_train

    run_train(*arguments)
    return 0


def _key_values(pairs: list[str], what: str, cast=str) -> dict:
    from .arguments import split_pair

    out = {}
    for pair in pairs or []:
        key, value = split_pair(pair, f"--{what}", "attribute=value", error=UsageError)
        out[key] = cast(value)
    return out


def _number(flag: str):
    def cast(text: str) -> float:
        try:
            return float(text)
        except ValueError:
            raise UsageError(f"{flag} takes attribute=number pairs (e.g. {flag} attitude=2); got {text!r}.") from None
    return cast


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
            raise UsageError(f"{token} takes attribute=value pairs (e.g. {token} attitude=optimistic); got {found}.")
    return out


def _add_generation_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="A saved MIRACLE model folder or Hub id (default / 'default': the packaged default model).")
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
    try:
        argv = _one_pair_per_flag(argv)
    except UsageError as error:
        parser.error(str(error))
    args = parser.parse_args(argv)
    model_path = resolve_model(args.model)  # before torch: a missing folder is reported at once
    import torch
    import transformers
    from transformers import pipeline

    from .. import load_model_and_processor

    personality = _key_values(args.personality, "personality") or None
    weights = _key_values(args.weight, "weight", _number("--weight")) or None
    print(f"Loading {model_path or 'the packaged default model'} ...", file=sys.stderr, flush=True)
    model, processor = load_model_and_processor(model_path)
    chat = pipeline("personalized-dialogue", model=model, processor=processor)
    torch.manual_seed(args.seed)
    # One reply is printed as it is written; several come together at the end.
    streamer = transformers.TextStreamer(processor.decoder_tokenizer, skip_prompt=True, skip_special_tokens=True) \
        if args.num_return_sequences == 1 else None
    outputs = chat(
        args.turns,
        personality=personality,
        attribute_weights=weights,
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

    run_demo(resolve_model(args.model), args.contexts, seed=args.seed, **generation_options(args))
    return 0


@dataclass(frozen=True)
class Command:
    """A subcommand: one line of help, and its `run(argv) -> exit status`, either a function or "module:function"
    under `modeling_miracle.commands` (imported only when the subcommand runs, so `miracle --help` stays fast)."""

    summary: str
    run: object

    def __call__(self, argv: list[str]) -> int:
        run = self.run
        if isinstance(run, str):
            module, _, function = run.partition(":")
            run = getattr(import_module(f"{__package__}.{module}"), function)
        return run(argv)


# Add a subcommand here: name -> Command(summary, "module:function").
COMMANDS = {
    "train": Command("train or continue a MIRACLE model (--help: MIRACLE's flags; --help-all: the Trainer's too)", _train),
    "generate": Command("personalized replies to your own conversation", _generate),
    "demo": Command("all 8 personalities on corpus test contexts", _demo),
    "evaluate": Command("the paper's metrics on a test file (tables 1 and 4)", "evaluate:main"),
    "collect": Command("collect single-aspect dialogues with any chat LLM", "collect:main"),
    "serve": Command("an OpenAI-compatible chat-completions server (batched, streaming)", "serve:main"),
    "web": Command("a Gradio web demo with a control per attribute", "web:main"),
}

DEBUG_FLAG, DEBUG_VARIABLE = "--debug", "MIRACLE_DEBUG"
# Mistakes a user can make (a bad value, a missing or used folder, an unreachable server): one line, status 2.
USER_ERRORS = (ValueError, OSError, UsageError)


def _usage() -> str:
    width = max(map(len, COMMANDS))
    return "\n".join([__doc__.rstrip(), "", "commands:",
                      *(f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()),
                      "", "Run `miracle <command> --help` for a command's options."])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    before_turns = argv.index("--") if "--" in argv else len(argv)
    debug = DEBUG_FLAG in argv[:before_turns] or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    argv = [a for i, a in enumerate(argv) if not (a == DEBUG_FLAG and i < before_turns)]
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(_usage())
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nmiracle: unknown command {argv[0]!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
            return 2
        return 0
    try:
        return COMMANDS[argv[0]](argv[1:])
    except USER_ERRORS as error:
        if debug:
            raise
        print(f"miracle {argv[0]}: error: {_one_line(error)}", file=sys.stderr)
        print(f"(add {DEBUG_FLAG} or set {DEBUG_VARIABLE}=1 for the traceback)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"miracle {argv[0]}: interrupted", file=sys.stderr)
        return 130


def _one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    if isinstance(error, KeyError) and len(error.args) == 1:
        text = str(error.args[0])
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
