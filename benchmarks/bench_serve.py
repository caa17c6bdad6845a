"""Load run of `miracle serve`'s API on 127.0.0.1: throughput and latency with batching vs one request at a time.

    python benchmarks/bench_serve.py [--model PATH | --tiny] [--requests 200] [--concurrency 16] [--max-tokens 24]

Starts the app twice in this process (uvicorn on a free 127.0.0.1 port, nothing else is contacted): once with the
batching engine (`--max-batch-size`, default the concurrency) and once with batches of one. Each time, `--concurrency`
client threads send `--requests` chat-completion requests in all (the personalities cycle through every
combination of aspects, so each batch mixes personalities), then the run stops by itself. Prints requests/s,
generated tokens/s, p50/p95 latency and the mean batch size. `--tiny` serves a tiny random model (a check of the
serving machinery, seconds); the default is the packaged default model.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modeling_miracle.commands.demo import test_contexts  # noqa: E402
from modeling_miracle.sampling import all_personalities  # noqa: E402
from modeling_miracle.serving.app import create_app  # noqa: E402
from modeling_miracle.serving.engine import EngineSettings  # noqa: E402
from modeling_miracle.serving.protocol import Limits  # noqa: E402
from modeling_miracle.serving.server import BackgroundServer  # noqa: E402


def load(args):
    if args.tiny:
        from tests.conftest import make_model

        from modeling_miracle import MiracleProcessor
        from modeling_miracle.backbones import load_gpt2_tokenizer, minilm_folder
        from transformers import BertTokenizerFast

        processor = MiracleProcessor(BertTokenizerFast.from_pretrained(minilm_folder()), load_gpt2_tokenizer(),
                                     max_encoder_length=64, max_prompt_length=96)
        return make_model("gpt2"), processor
    from modeling_miracle import load_model_and_processor

    return load_model_and_processor(args.model)


def run_load(url: str, bodies: list[dict], concurrency: int) -> tuple[float, list[float], int]:
    """Send every body with `concurrency` threads; (wall seconds, latencies, generated tokens)."""
    latencies, tokens, lock, next_index = [], [0], threading.Lock(), iter(range(len(bodies)))

    def worker():
        with httpx.Client(base_url=url, timeout=600) as client:
            while True:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                start = time.perf_counter()
                response = client.post("/v1/chat/completions", json=bodies[index])
                elapsed = time.perf_counter() - start
                response.raise_for_status()
                with lock:
                    latencies.append(elapsed)
                    tokens[0] += response.json()["usage"]["completion_tokens"]

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, latencies, tokens[0]


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--max-batch-size", type=int, default=None)
    parser.add_argument("--batch-wait-ms", type=float, default=10.0)
    args = parser.parse_args()
    model, processor = load(args)
    personalities = all_personalities(model.config.attributes)
    contexts = test_contexts(8)
    bodies = [{"messages": contexts[i % len(contexts)], "max_tokens": args.max_tokens, "seed": i,
               "personality": personalities[i % len(personalities)]} for i in range(args.requests)]
    print(f"model: {args.model or ('tiny random' if args.tiny else 'packaged default')}, torch threads: "
          f"{torch.get_num_threads()}, {args.requests} requests, {args.concurrency} at a time, max_tokens "
          f"{args.max_tokens}, greedy")
    print("| engine | requests/s | generated tokens/s | p50 latency (s) | p95 latency (s) | mean batch |")
    print("|---|---|---|---|---|---|")
    results = {}
    for name, batch_size in (("batched", args.max_batch_size or args.concurrency), ("one at a time", 1)):
        app = create_app(model, processor, "bench", Limits(max_new_tokens=args.max_tokens),
                         EngineSettings(batch_size, args.batch_wait_ms / 1000, max_queue=max(64, args.concurrency)))
        with BackgroundServer(app) as server:
            run_load(server.url, bodies[: min(len(bodies), args.concurrency)], args.concurrency)  # warm-up
            app.state.engine.batch_sizes.clear()
            wall, latencies, tokens = run_load(server.url, bodies, args.concurrency)
            sizes = app.state.engine.batch_sizes
        results[name] = args.requests / wall
        print(f"| {name} (max batch {batch_size}) | {args.requests / wall:.2f} | {tokens / wall:.1f} "
              f"| {percentile(latencies, 50):.2f} | {percentile(latencies, 95):.2f} | {sum(sizes) / len(sizes):.1f} |")
    print(f"batching gain in requests/s: {results['batched'] / results['one at a time']:.1f}x")


if __name__ == "__main__":
    main()
