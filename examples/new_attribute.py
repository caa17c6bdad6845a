"""Teach a trained MIRACLE model a new attribute: add a head, train it on the frozen latent space, sample with it.

    python examples/new_attribute.py --model runs/my-miracle --name formality --aspects casual formal \
        --data formality.jsonl [--max-steps 200]

`formality.jsonl` holds single-aspect dialogues in the authors' format (`"tag"`: 0/1 or the aspect name). Only
the new head trains; the rest of the model, existing heads included, stays exactly as it was.
"""

import argparse

from transformers import TrainingArguments

from modeling_miracle import MiracleForPersonalizedGeneration, MiracleProcessor
from modeling_miracle.training import MiracleTrainer, load_miracle_dataset
from modeling_miracle.training.new_attribute import prepare_new_attribute
from modeling_miracle.training.run_folder import prepare_output_dir


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--aspects", nargs="+", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--output-dir", default=None)
    parser.add_argument("--overwrite", action="store_true", help="Write into a non-empty --output-dir.")
    args = parser.parse_args()
    output = args.output_dir or f"{args.model}-{args.name}"
    prepare_output_dir(output, overwrite_output_dir=args.overwrite)

    model = MiracleForPersonalizedGeneration.from_pretrained(args.model)
    processor = MiracleProcessor.from_pretrained(args.model)
    collator = prepare_new_attribute(model, processor, args.name, args.aspects, head_only=True)
    dataset = load_miracle_dataset({args.name: args.data}, model.config.attributes)
    MiracleTrainer(
        model=model,
        args=TrainingArguments(output_dir=output, max_steps=args.max_steps, per_device_train_batch_size=32,
                               learning_rate=1e-3, logging_steps=20, save_strategy="no", report_to=[]),
        train_dataset=dataset,
        data_collator=collator,
    ).train()
    model.eval().save_pretrained(output)
    processor.save_pretrained(output)

    inputs = processor(["What did you do last weekend?"])
    for aspect in args.aspects:
        sample = model.sample_latent(inputs["prior_input_ids"], inputs["prior_attention_mask"], personality={args.name: aspect})
        out = model.generate(**inputs, latent=sample.latent, max_new_tokens=40)
        text = processor.batch_decode(out, prompt_length=inputs["input_ids"].shape[1])[0]
        diagnostics = sample.diagnostics(model.config.attributes)[0][args.name]
        print(f"{aspect}: p {diagnostics['before']:.2f} -> {diagnostics['after']:.2f}  {text}")
    print(f"Saved to {output}")


if __name__ == "__main__":
    main()
