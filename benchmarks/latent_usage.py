"""Does the decoder use z, and does z carry the aspect into the text? (diagnosis before tuning)

    python benchmarks/latent_usage.py [--model runs/x] [--per-attribute 48] [--scorers runs/scorers]
    python benchmarks/latent_usage.py --parts 2 --contexts ../shared/data/contexts/dailydialog.validation.jsonl --max-contexts 48

On the packaged corpus's validation dialogues (one example per assistant turn, `--per-attribute` of each attribute,
both aspects balanced) it prints:

1. reconstruction loss of the validation responses decoded from their own posterior mean, from the prior mean, and
   from posterior means shuffled across rows (a decoder that ignores z gives three equal numbers);
2. aspect transfer: each context decoded (greedy) with the posterior mean of a same-attribute response of each
   aspect; the attribute scorer says how often the text shows the aspect of the z it was decoded from (50 % = the
   decoder ignores the aspect in z, and no sampler can fix that); with `--contexts`, the contexts are real
   conversations instead (their history shows no aspect), each decoded with a donor z of every aspect;
3. where the ODE ends: norms of posterior means, prior samples and EBM end points, and each one's distance to the
   centroid of the requested aspect's posterior means.
"""

from __future__ import annotations

import argparse
import random

import torch

from common import context_examples, corpus_examples_by_aspect, scorer_models
from modeling_miracle import load_model_and_processor


def validation_examples(attributes: dict[str, list[str]], per_attribute: int, seed: int = 0) -> list[dict]:
    """`per_attribute` validation examples of each attribute, alternating its aspects."""
    rng = random.Random(seed)
    examples = []
    for by_aspect in corpus_examples_by_aspect("validation", attributes).values():
        for queue in by_aspect.values():
            rng.shuffle(queue)
        for i in range(per_attribute // len(by_aspect)):
            examples += [queue[i] for queue in by_aspect.values()]
    return examples


@torch.no_grad()
def posterior_and_prior_means(model, processor, examples, batch_size=16):
    posterior, prior = [], []
    for start in range(0, len(examples), batch_size):
        batch = examples[start:start + batch_size]
        inputs = processor([e["messages"] for e in batch], responses=[e["response"] for e in batch])
        posterior.append(model.encode_posterior(inputs["posterior_input_ids"], inputs["posterior_attention_mask"])[0])
        prior.append(model.encode_prior(inputs["prior_input_ids"], inputs["prior_attention_mask"])[0])
    return torch.cat(posterior), torch.cat(prior)


@torch.no_grad()
def reconstruction(model, processor, examples, latents, batch_size=16) -> float:
    """Token-weighted mean response NLL with the given z per example."""
    total, tokens = 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = examples[start:start + batch_size]
        inputs = processor([e["messages"] for e in batch], responses=[e["response"] for e in batch])
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=inputs["labels"],
                    latent=latents[start:start + batch_size], use_cache=False)
        count = int((inputs["labels"][:, 1:] != -100).sum())
        total += float(out.reconstruction_loss) * count
        tokens += count
    return total / tokens


@torch.no_grad()
def decode_with(model, processor, examples, latents, batch_size=16, max_new_tokens=40) -> list[str]:
    texts = []
    for start in range(0, len(examples), batch_size):
        batch = examples[start:start + batch_size]
        inputs = processor([e["messages"] for e in batch])
        output = model.generate(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                latent=latents[start:start + batch_size], max_new_tokens=max_new_tokens, do_sample=False)
        texts += processor.batch_decode(output, prompt_length=inputs["input_ids"].shape[1])
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="Saved MIRACLE model or default-model parts folder (default: shipped).")
    parser.add_argument("--per-attribute", type=int, default=48)
    parser.add_argument("--scorers", default="runs/scorers")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start-scales", type=float, nargs="*", default=[0.0], help="ODE start scales besides 1 (paper).")
    parser.add_argument("--parts", default="1,2,3", help="Which diagnoses to run (1: reconstruction, 2: aspect transfer, 3: ODE end).")
    parser.add_argument("--contexts", nargs="+", default=None, help="Real context files for the aspect transfer (part 2).")
    parser.add_argument("--max-contexts", type=int, default=48)
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    torch.manual_seed(args.seed)
    model, processor = load_model_and_processor(args.model)
    attributes = model.config.attributes
    examples = validation_examples(attributes, args.per_attribute, args.seed)
    posterior, prior = posterior_and_prior_means(model, processor, examples)
    print(f"model: {args.model or 'shipped default'}; {len(examples)} validation examples "
          f"({args.per_attribute} per attribute)\n")

    if "1" in parts:
        reconstruction_table(model, processor, examples, posterior, prior, args.seed)
    if "2" in parts and args.contexts:
        real_context_transfer_table(model, processor, examples, posterior, attributes, args)
    elif "2" in parts:
        aspect_transfer_table(model, processor, examples, posterior, attributes, args)
    if "3" in parts:
        ode_end_table(model, processor, examples, posterior, args)


def reconstruction_table(model, processor, examples, posterior, prior, seed):
    shuffled = posterior[torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed))]
    rows = {"own posterior mean": posterior, "prior mean": prior, "posterior mean shuffled across rows": shuffled}
    print("| z decoded from | reconstruction loss (nats/token) |\n|---|---|")
    for name, latents in rows.items():
        print(f"| {name} | {reconstruction(model, processor, examples, latents):.4f} |")


def aspect_transfer_table(model, processor, examples, posterior, attributes, args):
    scorers = scorer_models(args.scorers, attributes)
    print("\n| attribute | texts showing the aspect of their z (own-aspect z / opposite-aspect z / both) |\n|---|---|")
    summary = []
    for attribute in attributes:
        index = [i for i, e in enumerate(examples) if e["attribute"] == attribute]
        by_aspect = {a: [i for i in index if examples[i]["aspect_id"] == a] for a in range(len(attributes[attribute]))}
        rng = random.Random(args.seed)
        donors, wanted = [], []
        for i in index:
            for aspect, pool in by_aspect.items():
                donors.append(rng.choice([j for j in pool if j != i]))
                wanted.append(aspect)
        subset = [examples[i] for i in index for _ in by_aspect]
        texts = decode_with(model, processor, subset, posterior[donors], max_new_tokens=args.max_new_tokens)
        predicted = scorers[attribute].predict(texts)
        hits = [p == w for p, w in zip(predicted, wanted)]
        own_aspect = [h for h, e, w in zip(hits, subset, wanted) if e["aspect_id"] == w]
        other = [h for h, e, w in zip(hits, subset, wanted) if e["aspect_id"] != w]
        first = [h for h, e in zip(hits, subset) if len(e["messages"]) == 1]
        summary.append(sum(hits) / len(hits))
        print(f"| {attribute} | {100 * sum(own_aspect) / len(own_aspect):.1f} % / {100 * sum(other) / len(other):.1f} % / "
              f"{100 * sum(hits) / len(hits):.1f} % (first turns only: {100 * sum(first) / max(len(first), 1):.1f} % "
              f"of {len(first)}) |")
        for text, w in list(zip(texts, wanted))[:4]:
            print(f"|   z of {attributes[attribute][w]} | {text[:110]} |")
    print(f"\nMean over attributes: {100 * sum(summary) / len(summary):.1f} % (50 % = aspect in z ignored)")


def real_context_transfer_table(model, processor, examples, posterior, attributes, args):
    """Real conversations decoded with the posterior mean of a validation response of each aspect (the donor)."""
    scorers = scorer_models(args.scorers, attributes)
    contexts = list({e["context"]: e for e in context_examples(args.contexts, attributes)}.values())[:args.max_contexts]
    print(f"\n{len(contexts)} real contexts from {args.contexts}, each decoded with a donor z of every aspect\n"
          "| attribute | texts showing the aspect of their z | per aspect |\n|---|---|---|")
    rng, summary = random.Random(args.seed), []
    for attribute, aspects in attributes.items():
        pools = {a: [i for i, e in enumerate(examples) if e["attribute"] == attribute and e["aspect_id"] == a]
                 for a in range(len(aspects))}
        subset, donors, wanted = [], [], []
        for context in contexts:
            for aspect, pool in pools.items():
                subset.append(context)
                donors.append(rng.choice(pool))
                wanted.append(aspect)
        texts = decode_with(model, processor, subset, posterior[donors], max_new_tokens=args.max_new_tokens)
        hits = [p == w for p, w in zip(scorers[attribute].predict(texts), wanted)]
        per_aspect = " / ".join(f"{aspects[a]} {100 * sum(h for h, w in zip(hits, wanted) if w == a) / len(contexts):.1f} %"
                                for a in pools)
        summary.append(sum(hits) / len(hits))
        print(f"| {attribute} | {100 * summary[-1]:.1f} % | {per_aspect} |")
        for text, w in list(zip(texts, wanted))[:2]:
            print(f"|   z of {aspects[w]} | {text[:110]} | |")
    print(f"\nMean over attributes: {100 * sum(summary) / len(summary):.1f} % (50 % = aspect in z ignored)")


def ode_end_table(model, processor, examples, posterior, args):
    inputs = processor([e["messages"] for e in examples])
    personality = [{e["attribute"]: e["aspect_id"]} for e in examples]
    centroids = {}
    for i, e in enumerate(examples):
        centroids.setdefault((e["attribute"], e["aspect_id"]), []).append(posterior[i])
    centroid = torch.stack([torch.stack(centroids[(e["attribute"], e["aspect_id"])]).mean(0) for e in examples])
    print("\n| latent | mean norm | mean distance to the requested aspect's posterior centroid | requested-aspect "
          "probability |\n|---|---|---|---|")
    print(f"| posterior means | {posterior.norm(dim=-1).mean():.2f} | {(posterior - centroid).norm(dim=-1).mean():.2f} | |")
    for scale in sorted({1.0, *args.start_scales}, reverse=True):
        sample = model.sample_latent(inputs["prior_input_ids"], inputs["prior_attention_mask"], personality,
                                     generator=torch.Generator().manual_seed(args.seed), sampler_start_scale=scale)
        for name, latents, probability in (
            (f"ODE start (start scale {scale:g})", sample.start_latent, sample.aspect_probability_before),
            (f"EBM end point (start scale {scale:g}, NFE {sample.function_evaluations})", sample.latent,
             sample.aspect_probability_after),
        ):
            print(f"| {name} | {latents.norm(dim=-1).mean():.2f} | {(latents - centroid).norm(dim=-1).mean():.2f} | "
                  f"{probability.nanmean():.3f} |")


if __name__ == "__main__":
    main()
