"""`miracle serve`: an OpenAI-compatible chat-completions server over a MIRACLE model (needs the `serve` extra)."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="miracle serve",
        description="Serve POST /v1/chat/completions and GET /v1/models; the personality and MIRACLE's options come "
                    "as extra body fields (openai client: extra_body={'personality': {'attitude': 'optimistic'}}).")
    parser.add_argument("--model", default=None, help="A saved MIRACLE model folder (default: the packaged default model).")
    parser.add_argument("--model-id", default=None, help="The name clients pass as `model` (default: 'miracle-default' "
                                                         "or the model folder's name).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-batch-size", type=int, default=8, help="Requests decoded together at most.")
    parser.add_argument("--batch-wait-ms", type=float, default=10.0,
                        help="How long the first waiting request waits for others to share its batch.")
    parser.add_argument("--max-queue", type=int, default=64, help="Waiting requests at most; more get 503.")
    parser.add_argument("--max-tokens-limit", type=int, default=256, help="The largest max_tokens a request may ask for.")
    parser.add_argument("--graceful-shutdown-s", type=float, default=30.0,
                        help="On Ctrl-C, how long replies being written may take to finish.")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from pathlib import Path

    from .. import load_model_and_processor
    from ..serving.app import create_app
    from ..serving.engine import EngineSettings
    from ..serving.protocol import Limits
    from ..serving.server import serve

    print(f"Loading {args.model or 'the packaged default model'} ...", file=sys.stderr, flush=True)
    model, processor = load_model_and_processor(args.model)
    model_id = args.model_id or (Path(args.model).resolve().name if args.model else "miracle-default")
    app = create_app(model, processor, model_id, Limits(max_new_tokens=args.max_tokens_limit),
                     EngineSettings(args.max_batch_size, args.batch_wait_ms / 1000, args.max_queue))
    print(f"Serving {model_id!r} at http://{args.host}:{args.port}/v1 (Ctrl-C to stop)", file=sys.stderr, flush=True)
    serve(app, args.host, args.port, graceful_shutdown_s=args.graceful_shutdown_s)
    return 0
