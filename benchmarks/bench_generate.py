"""Generation speed of MIRACLE on the offline default backbones (MiniLM encoder, SmolLM2-135M decoder).

    python benchmarks/bench_generate.py [--batch-sizes 1 16] [--new-tokens 40] [--repeats 3] [--model default]

Prints, for each batch size, ratios measured side by side in one run:
- MIRACLE `generate` with EBM sampling vs the same decoder's plain `generate` (goal: at most 10% overhead);
- with `--model` (a trained model, `default` for the shipped one): that model's own decoding defaults (its config's
  latent guidance and residual offsets, its `generation_config`) and one decoder pass (guidance off), each as a
  ratio to the plain decoder's `generate` (goal for the shipped decoding: at most 1.3x);
- KV-cached decoding vs the authors' way (the whole sequence recomputed at every step, `use_cache=False`);
- ODE function evaluations and wall time, the batch solved at once vs row by row.
Without `--model` the latent parts are random (speed does not depend on training). Every row decodes exactly
`--new-tokens` tokens.
"""

import argparse

import torch
from common import timed

from modeling_miracle.default_model import build_default_backbone_model, default_processor, load_model_and_processor
from modeling_miracle.commands.demo import test_contexts

PERSONALITY = {"language_style": "lyrical", "attitude": "optimistic", "mental_characteristics": "critical"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--new-tokens", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=None, help="A trained MIRACLE model ('default': the shipped one).")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.model:
        model, processor = load_model_and_processor(None if args.model == "default" else args.model)
        trained_rows(model, processor, args)
        return
    model = build_default_backbone_model().eval()
    with torch.no_grad():  # random, non-zero latent maps so the prefix and embedding add do real work
        for linear in (model.latent_injection.to_embedding, model.latent_injection.to_prefix):
            linear.weight.normal_(0, 0.02)
    processor = default_processor()
    decode = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False,
                  pad_token_id=processor.decoder_tokenizer.pad_token_id)
    print(f"torch threads: {torch.get_num_threads()}, new tokens: {args.new_tokens}, greedy, median of {args.repeats}")
    print("| batch | plain decoder generate (s) | MIRACLE generate + EBM (s) | overhead | authors' recompute (s) "
          "| KV-cache speed-up | ODE NFE batched / row-by-row (sum) | ODE time batched / row-by-row (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for batch_size in args.batch_sizes:
        inputs, plain_inputs, plain = plain_decoder_time(model, processor, batch_size, decode, args.repeats)
        with torch.no_grad():
            miracle, _ = timed(lambda: model.generate(**inputs, personality=PERSONALITY, **decode), args.repeats)
            latent = model.sample_latent(inputs["prior_input_ids"], inputs["prior_attention_mask"], PERSONALITY).latent
            recompute, _ = timed(lambda: model.generate(**plain_inputs, latent=latent, use_cache=False, **decode), 1)
            cached, _ = timed(lambda: model.generate(**plain_inputs, latent=latent, **decode), args.repeats)
            batched_time, batched = timed(lambda: model.sample_latent(
                inputs["prior_input_ids"], inputs["prior_attention_mask"], PERSONALITY), args.repeats)
            rows = [(inputs["prior_input_ids"][i:i + 1], inputs["prior_attention_mask"][i:i + 1]) for i in range(batch_size)]
            row_time, row_results = timed(lambda: [model.sample_latent(ids, mask, PERSONALITY) for ids, mask in rows], args.repeats)
        row_nfe = sum(r.function_evaluations for r in row_results)
        print(f"| {batch_size} | {plain:.2f} | {miracle:.2f} | {100 * (miracle / plain - 1):+.1f}% | {recompute:.2f} "
              f"| {recompute / cached:.1f}x | {batched.function_evaluations} / {row_nfe} | {batched_time:.3f} / {row_time:.3f} |")


@torch.no_grad()
def plain_decoder_time(model, processor, batch_size: int, decode: dict, repeats: int):
    """(MIRACLE inputs, the decoder-only inputs, median time of the bare decoder's `generate`) for one batch size."""
    inputs = processor(test_contexts(batch_size))
    plain_inputs = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
    plain, _ = timed(lambda: model.decoder.generate(**plain_inputs, **decode), repeats)
    return inputs, plain_inputs, plain


def trained_rows(model, processor, args) -> None:
    """A trained model's own decoding defaults and one decoder pass, against the plain decoder's `generate`."""
    decode = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False,
                  pad_token_id=processor.decoder_tokenizer.pad_token_id)
    config = model.config
    print(f"torch threads: {torch.get_num_threads()}, new tokens: {args.new_tokens}, greedy, median of {args.repeats}; "
          f"model defaults: latent_guidance_scale {config.latent_guidance_scale}, latent_residual_layers "
          f"{config.latent_residual_layers}, generation_config {model.generation_config.to_diff_dict()}")
    print("| batch | plain decoder generate (s) | MIRACLE, its defaults (s) | ratio | MIRACLE, one pass (s) | ratio |")
    print("|---|---|---|---|---|---|")
    for batch_size in args.batch_sizes:
        inputs, _, plain = plain_decoder_time(model, processor, batch_size, decode, args.repeats)
        with torch.no_grad():
            shipped, _ = timed(lambda: model.generate(**inputs, personality=PERSONALITY, **decode), args.repeats)
            one_pass, _ = timed(lambda: model.generate(**inputs, personality=PERSONALITY, latent_guidance_scale=0.0,
                                                       **decode), args.repeats)
        print(f"| {batch_size} | {plain:.2f} | {shipped:.2f} | {shipped / plain:.2f}x | {one_pass:.2f} | {one_pass / plain:.2f}x |")


if __name__ == "__main__":
    main()
