"""Train the offline default model's MIRACLE parts on the project's own corpus.

    python examples/train_default_model.py [--max-steps 240] [--output runs/default_model/model]
    python examples/train_default_model.py --replace-shipped-model    # rebuild modeling_miracle/default_model

A run writes to its own folder (default `runs/default_model/model`; load it with
`modeling_miracle.load_default_model(folder)`); only `--replace-shipped-model` replaces the parts shipped in the
package, and only once training has finished. A non-empty output folder is refused unless `--overwrite` is given.

Backbones: the packaged all-MiniLM-L6-v2 (shared prior/posterior encoder, frozen) and SmolLM2-135M-Instruct
(frozen, LoRA r=8 on q/v); trained: Gaussian heads, latent injection (embedding add + latent prefix), the three
attribute heads, LoRA. Data: `training/corpus/dialogue_*.train.jsonl` (1,224 dialogues, one example per turn).
Writes the adapter (+ MIRACLE layers) and `miracle_settings.json` (settings, data, time taken) to the output folder.
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from transformers import TrainingArguments, set_seed  # noqa: E402

from modeling_miracle.default_model import (  # noqa: E402
    DEFAULT_CONFIG,
    DEFAULT_LORA,
    DEFAULT_MODEL_DIR,
    build_default_backbone_model,
    default_processor,
)
from training import MiracleDataCollator, MiracleTrainer, corpus_files, load_miracle_dataset  # noqa: E402
from training.peft_utils import apply_lora  # noqa: E402

DEFAULT_OUTPUT = Path("runs/default_model/model")
SETTINGS = {"max_steps": 240, "batch_size": 8, "learning_rate": 1e-3, "warmup_steps": 20, "seed": 42}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The script's flags, with `output` resolved and checked before any training starts."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-steps", type=int, default=SETTINGS["max_steps"])
    parser.add_argument("--output", default=None, help=f"Where to write the trained parts (default {DEFAULT_OUTPUT}).")
    parser.add_argument("--replace-shipped-model", action="store_true",
                        help=f"Write to the package's shipped default model ({DEFAULT_MODEL_DIR}), replacing it.")
    parser.add_argument("--overwrite", action="store_true", help="Replace what a non-empty --output holds.")
    parser.add_argument("--work-dir", default="runs/default_model/trainer")
    args = parser.parse_args(argv)
    shipped = DEFAULT_MODEL_DIR.resolve()
    if args.replace_shipped_model:
        if args.output is not None and Path(args.output).resolve() != shipped:
            parser.error("--replace-shipped-model writes to the shipped folder: drop --output.")
        args.output = shipped
        return args
    args.output = Path(args.output if args.output is not None else DEFAULT_OUTPUT)
    if args.output.resolve() == shipped:
        parser.error(f"{args.output} holds the shipped default model: pass --replace-shipped-model to replace it.")
    if args.output.is_file():
        parser.error(f"{args.output} is a file: give a folder.")
    if args.output.is_dir() and any(args.output.iterdir()) and not args.overwrite:
        parser.error(f"{args.output} is not empty: pass --overwrite to replace it, or choose another --output.")
    return args


def write_atomically(output: Path, write) -> None:
    """`write(folder)` into a sibling folder, then swap it in: an interrupted run never leaves a half-written output."""
    partial = output.with_name(output.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    write(partial)
    if output.exists():
        shutil.rmtree(output)
    partial.rename(output)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = {**SETTINGS, "max_steps": args.max_steps}
    set_seed(settings["seed"])
    torch.set_num_threads(max(1, torch.get_num_threads()))

    model = build_default_backbone_model()
    processor = default_processor()
    dataset = load_miracle_dataset(corpus_files("train"), model.config.attributes)
    peft_model = apply_lora(model, **DEFAULT_LORA)
    peft_model.print_trainable_parameters()
    training_args = TrainingArguments(
        output_dir=args.work_dir,
        max_steps=settings["max_steps"],
        per_device_train_batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"],
        warmup_steps=settings["warmup_steps"],
        lr_scheduler_type="cosine",
        logging_steps=10,
        save_strategy="no",
        report_to=[],
        remove_unused_columns=False,
        seed=settings["seed"],
        dataloader_num_workers=0,
    )
    trainer = MiracleTrainer(
        model=peft_model,
        args=training_args,
        train_dataset=dataset,
        data_collator=MiracleDataCollator(processor),
        data_description="MIRACLE corpus (training/corpus), train split: 1,224 single-aspect dialogues",
    )
    start = time.time()
    trainer.train()
    minutes = (time.time() - start) / 60

    record = {
        "config": DEFAULT_CONFIG,
        "lora": DEFAULT_LORA,
        "training": settings,
        "examples": len(dataset),
        "minutes": round(minutes, 1),
        "machine": f"{torch.get_num_threads()} CPU threads",
        "log": [entry for entry in trainer.state.log_history if "loss" in entry],
    }

    def write(folder: Path) -> None:
        peft_model.save_pretrained(folder)
        (folder / "README.md").unlink(missing_ok=True)
        (folder / "miracle_settings.json").write_text(json.dumps(record, indent=2))

    output = args.output
    write_atomically(output, write)
    print(f"Trained in {minutes:.1f} min; saved to {output}")


if __name__ == "__main__":
    main()
