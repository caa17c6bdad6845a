"""`miracle demo`: the default (or a given) model's responses to corpus test contexts for all aspect combinations."""

from __future__ import annotations

import sys

import torch

from ..corpus import CORPUS_DIR, read_jsonl
from ..configuration.personality import all_personalities


def test_contexts(count: int) -> list[list[dict]]:
    """The first user turns of the first `count` multi-attribute test dialogues of the packaged corpus."""
    rows = read_jsonl(CORPUS_DIR / "dialogue_multi.test.jsonl")
    step = max(1, len(rows) // max(count, 1))
    return [[{"role": "user", "content": row["input"][0]}] for row in rows[::step][:count]]


def run_demo(model_path: str | None, contexts: int = 2, max_new_tokens: int = 40, use_ebm: bool = True, seed: int = 0,
             **generate_options) -> list[dict]:
    """Print and return, per context and personality, the response and each aspect's latent probability
    (`generate_options`, e.g. `latent_guidance_scale`, go to the pipeline call)."""
    from transformers import pipeline

    from .. import load_model_and_processor

    print(f"Loading {model_path or 'the packaged default model'} ...", file=sys.stderr, flush=True)
    model, processor = load_model_and_processor(model_path)
    chat = pipeline("personalized-dialogue", model=model, processor=processor)
    personalities = all_personalities(model.config.attributes)
    results = []
    conversations = test_contexts(contexts)
    for number, conversation in enumerate(conversations, 1):
        print(f"\nUser: {conversation[-1]['content']}", flush=True)
        print(f"(context {number}/{len(conversations)}: generating {len(personalities)} responses ...)", file=sys.stderr,
              flush=True)
        torch.manual_seed(seed)
        outputs = chat([conversation] * len(personalities), personality=personalities, use_ebm=use_ebm,
                       max_new_tokens=max_new_tokens, return_latent_diagnostics=True, batch_size=len(personalities),
                       **generate_options)
        for personality, output in zip(personalities, outputs):
            output = output[0]
            probabilities = ", ".join(
                f"{d['aspect']} {d['before']:.2f}->{d['after']:.2f}" for d in output["latent_diagnostics"].values()
            )
            print(f"  [{' + '.join(personality.values())}]  ({probabilities})\n    {output['generated_text']}", flush=True)
            results.append({"context": conversation, "personality": personality, **output})
    return results
