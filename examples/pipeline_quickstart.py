"""Quick start: answer one conversation in two opposite personalities with `pipeline("personalized-dialogue")`.

    python examples/pipeline_quickstart.py [--model PATH_OR_HUB_ID] [--max-new-tokens 40]

`--model`: a saved MIRACLE model with its processor (e.g. a folder written by `pipe.save_pretrained`). Without it,
the packaged default model is used (`modeling_miracle.load_default_model`).
"""

import argparse

import torch
from transformers import pipeline

import modeling_miracle  # noqa: F401  (registers the "personalized-dialogue" task)


def default_pipeline():
    """The pipeline of the packaged default model (backbones from their PyPI packages)."""
    model, processor = modeling_miracle.load_default_model()
    return pipeline("personalized-dialogue", model=model, processor=processor)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="path or Hub id of a saved MIRACLE model (default: the packaged one)")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    args = parser.parse_args()

    chat = pipeline("personalized-dialogue", model=args.model) if args.model else default_pipeline()
    conversation = [
        {"role": "user", "content": "I just moved to a new town."},
        {"role": "assistant", "content": "Moving takes a lot of energy."},
        {"role": "user", "content": "How should I meet people here?"},
    ]
    attributes = chat.model.config.attributes  # {attribute: [aspects]}
    for personality in ({a: aspects[-1] for a, aspects in attributes.items()},
                        {a: aspects[0] for a, aspects in attributes.items()}):
        torch.manual_seed(0)  # the latent sampling starts from a random sample
        answer = chat(conversation, personality=personality, max_new_tokens=args.max_new_tokens,
                      return_latent_diagnostics=True)[0]
        print(f"\n{personality}\n  -> {answer['generated_text']}")
        for attribute, d in answer["latent_diagnostics"].items():
            print(f"     p({d['aspect']}) in the latent: {d['before']:.2f} -> {d['after']:.2f}")


if __name__ == "__main__":
    main()
