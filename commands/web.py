"""`miracle web`: the Gradio demo over a MIRACLE model (needs the `web` extra)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="miracle web", description="A web page to chat with a MIRACLE model in a "
                                                                     "personality you set per attribute.")
    parser.add_argument("--model", default=None, help="A saved MIRACLE model folder (default: the packaged default model).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--max-tokens-limit", type=int, default=128, help="The largest 'max new tokens' on offer.")
    args = parser.parse_args(argv)
    from ..serving.web import WebDemo
    from .. import load_model_and_processor

    print(f"Loading {args.model or 'the packaged default model'} ...", file=sys.stderr, flush=True)
    model, processor = load_model_and_processor(args.model)
    demo = WebDemo(model, processor, max_new_tokens_limit=args.max_tokens_limit)
    try:
        demo.launch(server_name=args.host, server_port=args.port)
    finally:
        demo.engine.stop()
    return 0
