"""Train the offline default model's MIRACLE parts on the project's own corpus (and, on request, ship them).

    python examples/train_default_model.py [--max-steps 240] [--work-dir runs/default_model] [--replace-shipped]
        [--config '{"latent_prefix_length": 4}'] [--lora-r 8] [--lora-targets all-linear] [--save-steps 100] [--resume]

Backbones: the packaged all-MiniLM-L6-v2 (shared prior/posterior encoder, frozen) and SmolLM2-135M-Instruct
(frozen, LoRA r=8 on q/v); trained: Gaussian heads, latent injection (embedding add + latent prefix), the three
attribute heads, LoRA. Data: `corpus/dialogue_*.train.jsonl` (1,224 dialogues, one example per turn).
Writes the adapter (+ MIRACLE layers) and `miracle_settings.json` (settings, data, time taken) to
`<work-dir>/final`, or over the shipped parts in `modeling_miracle/default_model` with `--replace-shipped`.
Checkpoints go to `<work-dir>` every `--save-steps`; `--resume` continues from the last one there. A trial run never
touches the shipped parts; a non-empty `<work-dir>` is refused unless the run resumes or `--overwrite` is given (its
checkpoints are deleted first), and the result is written beside its folder and swapped in only once complete.
"""

import argparse
import json
import shutil
import time
from pathlib import Path

import torch
from transformers import TrainingArguments, set_seed

from modeling_miracle.default_model import (
    DEFAULT_CONFIG,
    DEFAULT_LORA,
    DEFAULT_MODEL_DIR,
    build_default_backbone_model,
    default_processor,
)
from modeling_miracle.training import MiracleDataCollator, MiracleTrainer, corpus_files, load_miracle_dataset
from modeling_miracle.training.peft_utils import apply_lora
from modeling_miracle.training.run_folder import prepare_output_dir

SETTINGS = {"max_steps": 240, "batch_size": 8, "learning_rate": 1e-3, "warmup_steps": 20, "seed": 42}
ALL_LINEAR = {"llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The script's flags; the work folder is checked before anything is built (see `prepare_output_dir`)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-steps", type=int, default=SETTINGS["max_steps"])
    parser.add_argument("--learning-rate", type=float, default=SETTINGS["learning_rate"])
    parser.add_argument("--work-dir", default="runs/default_model", help="Checkpoints, and the result in <work-dir>/final.")
    parser.add_argument("--replace-shipped", action="store_true", help=f"Write the result over {DEFAULT_MODEL_DIR}.")
    parser.add_argument("--config", default="{}", help="JSON of MiracleConfig overrides on top of the default model's.")
    parser.add_argument("--lora-r", type=int, default=DEFAULT_LORA["r"])
    parser.add_argument("--lora-targets", default=None, help="Comma-separated decoder module names, or 'all-linear'.")
    parser.add_argument("--history-dropout", type=float, default=0.0,
                        help="Share of examples whose decoder prompt keeps only the last user turn (collator option).")
    parser.add_argument("--save-steps", type=int, default=0, help="Checkpoint every N steps (0: no checkpoints).")
    parser.add_argument("--resume", action="store_true", help="Resume from the last checkpoint in --work-dir.")
    parser.add_argument("--overwrite", action="store_true", help="Start over in a non-empty --work-dir.")
    args = parser.parse_args(argv)
    try:
        prepare_output_dir(args.work_dir, args.resume, overwrite_output_dir=args.overwrite)
    except (OSError, ValueError) as error:
        parser.error(str(error).replace("--output_dir", "--work-dir").replace("--overwrite_output_dir true", "--overwrite")
                     .replace("--resume_from_checkpoint true", "--resume"))
    return args


def output_folder(args: argparse.Namespace) -> Path:
    """Where the result goes: `<work-dir>/final`, or the shipped parts only with `--replace-shipped`."""
    return DEFAULT_MODEL_DIR if args.replace_shipped else Path(args.work_dir) / "final"


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
    settings = {**SETTINGS, "max_steps": args.max_steps, "learning_rate": args.learning_rate,
                "decoder_history_dropout": args.history_dropout}
    config = {**DEFAULT_CONFIG, **json.loads(args.config)}
    lora = {**DEFAULT_LORA, "r": args.lora_r, "lora_alpha": 2 * args.lora_r}
    if args.lora_targets:
        lora["decoder_targets"] = ALL_LINEAR["llama"] if args.lora_targets == "all-linear" else args.lora_targets.split(",")
    set_seed(settings["seed"])
    torch.set_num_threads(max(1, torch.get_num_threads()))

    # The settings beside the checkpoints make each `checkpoint-N` loadable: `load_default_model(".../checkpoint-N")`.
    Path(args.work_dir).mkdir(parents=True, exist_ok=True)
    (Path(args.work_dir) / "miracle_settings.json").write_text(
        json.dumps({"config": config, "lora": lora, "training": settings}, indent=2))
    model = build_default_backbone_model(**config)
    processor = default_processor()
    dataset = load_miracle_dataset(corpus_files("train"), model.config.attributes)
    peft_model = apply_lora(model, **lora)
    peft_model.print_trainable_parameters()
    training_args = TrainingArguments(
        output_dir=args.work_dir,
        max_steps=settings["max_steps"],
        per_device_train_batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"],
        warmup_steps=settings["warmup_steps"],
        lr_scheduler_type="cosine",
        logging_steps=10,
        save_strategy="steps" if args.save_steps else "no",
        save_steps=args.save_steps or 500,
        save_total_limit=2,
        report_to=[],
        seed=settings["seed"],
        dataloader_num_workers=0,
    )
    trainer = MiracleTrainer(
        model=peft_model,
        args=training_args,
        train_dataset=dataset,
        data_collator=MiracleDataCollator(processor, decoder_history_dropout=args.history_dropout, seed=settings["seed"]),
        data_description="MIRACLE corpus (modeling_miracle.corpus), train split: 1,224 single-aspect dialogues",
    )
    start = time.time()
    trainer.train(resume_from_checkpoint=True if args.resume else None)
    minutes = (time.time() - start) / 60

    record = {
        "config": config,
        "lora": lora,
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

    output = output_folder(args)
    write_atomically(output, write)
    print(f"Trained in {minutes:.1f} min; saved to {output}")


if __name__ == "__main__":
    main()
