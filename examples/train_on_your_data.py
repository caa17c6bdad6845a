"""Train a MIRACLE model on your own single-aspect dialogues with `MiracleTrainer` (Python API).

    python examples/train_on_your_data.py --data-files attitude=my_attitude.jsonl humour=my_humour.jsonl \
        --attributes '{"attitude": ["pessimistic", "optimistic"], "humour": ["dry", "playful"]}' --max-steps 200

Without `--data-files` it trains on the packaged corpus (the paper's three attributes). Backbones default to the
packaged offline ones (frozen, LoRA on the decoder); pass `--encoder bert-base-uncased --decoder
microsoft/DialoGPT-medium --full` for the paper's setting (fully trained backbones).
"""

import argparse
import json

from transformers import AutoTokenizer, TrainingArguments, set_seed

from modeling_miracle import MiracleForPersonalizedGeneration, MiracleProcessor
from modeling_miracle.backbones import minilm_folder, smollm2_folder
from modeling_miracle.training import MiracleTrainer, corpus_files, load_miracle_dataset
from modeling_miracle.commands.arguments import DataArguments
from modeling_miracle.training.peft_utils import apply_lora
from modeling_miracle.training.run_folder import prepare_output_dir


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-files", nargs="*", default=[], help="attribute=path pairs")
    parser.add_argument("--attributes", default=None, help="JSON attribute -> aspects (default: the paper's)")
    parser.add_argument("--encoder", default=str(minilm_folder()))
    parser.add_argument("--decoder", default=None)
    parser.add_argument("--full", action="store_true", help="train the backbones too (no LoRA)")
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--output-dir", default="runs/my-miracle")
    parser.add_argument("--overwrite", action="store_true", help="Train into a non-empty --output-dir (its checkpoints go first).")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    prepare_output_dir(args.output_dir, overwrite_output_dir=args.overwrite)  # never mixes two runs' checkpoints
    set_seed(args.seed)  # before MIRACLE's layers are built: the same seed gives the same run

    decoder = args.decoder or str(smollm2_folder())
    attributes = json.loads(args.attributes) if args.attributes else None
    model = MiracleForPersonalizedGeneration.from_encoder_decoder_pretrained(
        args.encoder, decoder, attributes=attributes, latent_size=128, share_encoder=True
    )
    processor = MiracleProcessor(AutoTokenizer.from_pretrained(args.encoder), AutoTokenizer.from_pretrained(decoder))
    files = DataArguments.parse_pairs(args.data_files) if args.data_files else corpus_files("train")
    dataset = load_miracle_dataset(files, model.config.attributes)
    if not args.full:
        model.freeze_backbones()
    trained = model if args.full else apply_lora(model, r=8, lora_alpha=16)
    trainer = MiracleTrainer(
        model=trained,
        args=TrainingArguments(output_dir=args.output_dir, max_steps=args.max_steps, per_device_train_batch_size=8,
                               learning_rate=5e-5 if args.full else 1e-3, logging_steps=10, save_steps=100,
                               report_to=[], seed=args.seed),
        train_dataset=dataset,
        processing_class=processor,
    )
    trainer.train()
    final = trained if args.full else trained.merge_and_unload()
    final.save_pretrained(args.output_dir)
    processor.save_pretrained(args.output_dir)
    print(f"Saved to {args.output_dir}: use pipeline('personalized-dialogue', model='{args.output_dir}')")


if __name__ == "__main__":
    main()
