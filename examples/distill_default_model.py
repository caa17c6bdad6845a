"""Distil the shipped default model's latent guidance into one decoder pass.

    python examples/distill_default_model.py [--max-steps 300] [--work-dir runs/distilled] [--residual-layers 8,15,22]
        [--teacher-scale 2] [--teacher-plausibility 0.1] [--learning-rate 5e-4] [--save-steps 50] [--resume]

Teacher: the shipped model (`modeling_miracle/default_model`) decoding with latent guidance (two passes). Student:
the same parts (its LoRA adapter and latent maps, trained further) plus, with `--residual-layers`, a learned
residual-stream offset W_l z after those decoder blocks (`latent_residual_layers`, zero at the start). Loss:
KL(teacher's guided next-token distribution || student's one-pass one) on the corpus's training dialogues with a
random personality per row (`training.guidance_distillation`). The result (`<work-dir>/final`) is a default-model
folder whose decoding default is one pass (`latent_guidance_scale` 0); load it with
`load_model_and_processor("<work-dir>/final")` or `miracle demo --model <work-dir>/final`.
"""

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import TrainingArguments, set_seed

from modeling_miracle.default_model import DEFAULT_MODEL_DIR, build_default_backbone_model, default_processor, load_default_model
from modeling_miracle.training import MiracleDataCollator, corpus_files, load_miracle_dataset
from modeling_miracle.training.guidance_distillation import GuidanceDistillationTrainer
from modeling_miracle.training.peft_utils import load_lora
from modeling_miracle.training.run_folder import prepare_output_dir

from train_default_model import write_atomically


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default=str(DEFAULT_MODEL_DIR), help="Default-model parts of the teacher.")
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--residual-layers", default="8,15,22", help="Comma-separated decoder blocks ('' for none).")
    parser.add_argument("--teacher-scale", type=float, default=None, help="Teacher's guidance scale (default: its own).")
    parser.add_argument("--teacher-plausibility", type=float, default=None, help="Teacher's plausibility (default: its own).")
    parser.add_argument("--partial-share", type=float, default=0.25, help="Share of rows naming only some attributes.")
    parser.add_argument("--history-dropout", type=float, default=0.5, help="Collator's decoder_history_dropout.")
    parser.add_argument("--work-dir", default="runs/distilled")
    parser.add_argument("--save-steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    prepare_output_dir(args.work_dir, args.resume, overwrite_output_dir=args.overwrite)
    return args


def adapter_with_residual_offsets(teacher: str, folder: Path, layers: list[int], latent_size: int, hidden_size: int) -> str:
    """A copy of the teacher's adapter folder whose latent maps also hold zero residual offsets for `layers` (PEFT
    loads a saved module only when every key of it is present)."""
    from safetensors.torch import load_file, save_file

    folder.mkdir(parents=True, exist_ok=True)
    weights = load_file(str(Path(teacher) / "adapter_model.safetensors"))
    dtype = weights["base_model.model.latent_injection.to_prefix.weight"].dtype
    for layer in layers:
        key = f"base_model.model.latent_injection.to_residual.{layer}"
        weights[f"{key}.weight"] = torch.zeros(hidden_size, latent_size, dtype=dtype)
        weights[f"{key}.bias"] = torch.zeros(hidden_size, dtype=dtype)
    save_file(weights, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text((Path(teacher) / "adapter_config.json").read_text())
    return str(folder)


def main(argv=None) -> None:
    args = parse_args(argv)
    set_seed(args.seed)
    teacher_settings = json.loads((Path(args.teacher) / "miracle_settings.json").read_text())
    layers = [int(x) for x in args.residual_layers.split(",") if x.strip()]
    config = {**teacher_settings["config"], "latent_residual_layers": layers or None, "latent_guidance_scale": 0.0}
    training = {"max_steps": args.max_steps, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
                "seed": args.seed, "decoder_history_dropout": args.history_dropout, "partial_share": args.partial_share,
                "teacher": str(args.teacher), "teacher_scale": args.teacher_scale,
                "teacher_plausibility": args.teacher_plausibility}
    Path(args.work_dir).mkdir(parents=True, exist_ok=True)
    (Path(args.work_dir) / "miracle_settings.json").write_text(
        json.dumps({"config": config, "lora": teacher_settings["lora"], "training": training}, indent=2))

    teacher, _ = load_default_model(args.teacher)
    # The student starts as the teacher: its adapter and latent maps, trainable, plus zero residual offsets.
    base = build_default_backbone_model(**config)
    start_adapter = adapter_with_residual_offsets(args.teacher, Path(args.work_dir) / "start_adapter", layers,
                                                  base.config.latent_size, base.config.decoder.hidden_size)
    student = load_lora(base, start_adapter, is_trainable=True)
    student.print_trainable_parameters()
    processor = default_processor()
    dataset = load_miracle_dataset(corpus_files("train"), teacher.config.attributes)
    trainer = GuidanceDistillationTrainer(
        model=student,
        args=TrainingArguments(output_dir=args.work_dir, max_steps=args.max_steps, per_device_train_batch_size=args.batch_size,
                               learning_rate=args.learning_rate, warmup_steps=10, lr_scheduler_type="cosine",
                               logging_steps=10, save_strategy="steps", save_steps=args.save_steps, save_total_limit=2,
                               report_to=[], seed=args.seed, dataloader_num_workers=0),
        train_dataset=dataset,
        data_collator=MiracleDataCollator(processor, decoder_history_dropout=args.history_dropout, seed=args.seed),
        teacher=teacher, guidance_scale=args.teacher_scale, guidance_plausibility=args.teacher_plausibility,
        partial_share=args.partial_share,
        data_description="MIRACLE corpus (modeling_miracle.corpus), train split, guidance distillation",
    )
    start = time.time()
    trainer.train(resume_from_checkpoint=True if args.resume else None)
    minutes = (time.time() - start) / 60
    record = {"config": config, "lora": teacher_settings["lora"], "training": training, "examples": len(dataset),
              "minutes": round(minutes, 1), "machine": f"{torch.get_num_threads()} CPU threads",
              "log": [entry for entry in trainer.state.log_history if "loss" in entry]}

    def write(folder: Path) -> None:
        student.save_pretrained(folder)
        (folder / "README.md").unlink(missing_ok=True)
        (folder / "miracle_settings.json").write_text(json.dumps(record, indent=2))

    output = Path(args.work_dir) / "final"
    write_atomically(output, write)
    print(f"Distilled in {minutes:.1f} min; saved to {output}")


if __name__ == "__main__":
    main()
