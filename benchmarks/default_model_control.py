"""How much EBM sampling moves the default model's latent towards each requested aspect.

    python benchmarks/default_model_control.py [--contexts 24]

For the first user turns of the corpus's multi-attribute test dialogues and all 8 personalities, prints each
aspect's mean latent-classifier probability before and after the ODE, and the share of rows where it rose.
"""

import argparse

import torch

from modeling_miracle import load_default_model
from modeling_miracle.commands.demo import all_personalities, test_contexts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contexts", type=int, default=24)
    args = parser.parse_args()
    model, processor = load_default_model()
    inputs = processor(test_contexts(args.contexts))
    print(f"{inputs['prior_input_ids'].shape[0]} test contexts; mean probability of each requested aspect, before -> after")
    print("| personality | " + " | ".join(model.config.attributes) + " | rows where all rose | ODE NFE |")
    print("|---|" + "---|" * (len(model.config.attributes) + 2))
    totals = []
    for personality in all_personalities(model.config.attributes):
        sample = model.sample_latent(inputs["prior_input_ids"], inputs["prior_attention_mask"], personality,
                                     generator=torch.Generator().manual_seed(0))
        before, after = sample.aspect_probability_before, sample.aspect_probability_after
        cells = [f"{b:.2f} -> {a:.2f}" for b, a in zip(before.mean(0).tolist(), after.mean(0).tolist())]
        all_rose = (after > before).all(1).float().mean().item()
        totals.append((before.mean().item(), after.mean().item()))
        print(f"| {' + '.join(personality.values())} | " + " | ".join(cells) + f" | {100 * all_rose:.0f}% | {sample.function_evaluations} |")
    before = sum(b for b, _ in totals) / len(totals)
    after = sum(a for _, a in totals) / len(totals)
    print(f"\nOver all 8 personalities and 3 attributes: {before:.3f} -> {after:.3f}")


if __name__ == "__main__":
    main()
