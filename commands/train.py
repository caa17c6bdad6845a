"""`miracle train`: build or load a MIRACLE model, load data, train with `MiracleTrainer`, save (and push)."""

from __future__ import annotations

import os

import torch
from transformers import AutoTokenizer, TrainingArguments, set_seed
from transformers.training_args import ParallelMode

from .arguments import DataArguments, ModelArguments, RunArguments
from ..adapter_folders import backbones_reference, miracle_reference, write_adapter_folder_config
from ..training.adapter_checkpoints import AdapterFolderCallback
from .model_path import resolve_model
from ..training.collator import MiracleDataCollator
from ..training.data import AUTHORS_HUB_DATASET, AUTHORS_HUB_FILES, LoadReport, corpus_files, load_miracle_dataset
from ..training.new_attribute import prepare_new_attribute
from ..training.peft_utils import apply_lora
from ..training.run_folder import parse_resume, prepare_output_dir
from ..training.run_summary import TrainingSummaryCallback, describe_attributes
from ..training.trainer import MiracleTrainer


def _backbone(name: str | None, kind: str) -> str:
    """The backbone `name`, or the packaged offline one of `kind` ("encoder" / "decoder") for None or "default"."""
    from ..backbones import minilm_folder, smollm2_folder

    if name in (None, "default"):
        return str(minilm_folder() if kind == "encoder" else smollm2_folder())
    return name


def build_model_and_processor(model_args: ModelArguments):
    """A fresh model from backbones, or a saved one (optionally with a new attribute); and its processor."""
    from .. import MiracleForPersonalizedGeneration, MiracleProcessor

    limits = dict(max_encoder_length=model_args.max_encoder_length, max_prompt_length=model_args.max_prompt_length,
                  max_response_length=model_args.max_response_length)
    if model_args.from_model:
        source = resolve_model(model_args.from_model, "--from_model")
        if source is None or is_default_model_parts(source):
            from ..default_model import default_processor, load_default_model

            model, _ = load_default_model(source)
            return model.train().requires_grad_(True), default_processor(**limits)
        model = MiracleForPersonalizedGeneration.from_pretrained(source)
        processor = MiracleProcessor.from_pretrained(source, **limits)
        return model, processor
    encoder = _backbone(model_args.encoder, "encoder")
    decoder = _backbone(model_args.decoder, "decoder")
    decoder_kwargs = {"gguf_file": model_args.decoder_gguf_file} if model_args.decoder_gguf_file else {}
    model = MiracleForPersonalizedGeneration.from_encoder_decoder_pretrained(
        encoder, decoder, attributes=model_args.attributes_mapping(), decoder_kwargs=decoder_kwargs,
        **model_args.miracle_config_kwargs(),
    )
    processor = MiracleProcessor(AutoTokenizer.from_pretrained(encoder),
                                 AutoTokenizer.from_pretrained(decoder, **decoder_kwargs), **limits)
    return model, processor


def base_model_source(model_args: ModelArguments) -> dict:
    """Where a LoRA run's base model comes from (recorded in its adapter folders: `checkpoint-N`, `adapter/`)."""
    if model_args.from_model:
        return miracle_reference(model_args.from_model)
    return backbones_reference(model_args.encoder, model_args.decoder, model_args.decoder_gguf_file)

def is_default_model_parts(folder: str) -> bool:
    """A folder of default-model parts (LoRA adapter + `miracle_settings.json`, like the shipped model)."""
    return os.path.isfile(os.path.join(folder, "adapter_model.safetensors"))


def lora_of_saved_model(from_model: str | None) -> dict | None:
    """The LoRA settings a saved model was trained with (its `adapter/` folder, or the shipped model's), else None."""
    import json

    source = resolve_model(from_model, "--from_model") if from_model else None
    if from_model is None:
        return None
    if source is None:
        from ..default_model import DEFAULT_MODEL_DIR

        source = str(DEFAULT_MODEL_DIR)
    for folder in (source, os.path.join(source, "adapter")):
        config_file = os.path.join(folder, "adapter_config.json")
        if os.path.isfile(config_file):
            with open(config_file, encoding="utf-8") as handle:
                config = json.load(handle)
            return {"r": config.get("r"), "lora_alpha": config.get("lora_alpha"), "lora_dropout": config.get("lora_dropout")}
    return None


def resolve_lora(model_args: ModelArguments) -> None:
    """`--lora` not given: on (with the saved adapter's r / alpha / dropout) when `--from_model` was trained with LoRA,
    so a LoRA model continues as LoRA instead of training (and saving) every parameter; off otherwise."""
    if model_args.lora is not None:
        return
    saved = lora_of_saved_model(model_args.from_model)
    model_args.lora = saved is not None
    if saved:
        model_args.lora_r = saved["r"] or model_args.lora_r
        model_args.lora_alpha = saved["lora_alpha"] or model_args.lora_alpha
        model_args.lora_dropout = model_args.lora_dropout if saved["lora_dropout"] is None else saved["lora_dropout"]


def data_files_for(data_args: DataArguments, attributes: dict) -> dict:
    if data_args.data_files:
        return DataArguments.parse_pairs(data_args.data_files)
    if data_args.hub_dataset == AUTHORS_HUB_DATASET:
        return {a: f for a, f in AUTHORS_HUB_FILES.items() if a in attributes}
    if data_args.hub_dataset:
        raise ValueError("With --hub-dataset other than the authors' corpus, name the files: --data-files attribute=file.")
    return corpus_files("train")


def check_model_flags(model_args: ModelArguments) -> None:
    """Refuse flag combinations that would be silently ignored, and unknown `--miracle_config` keys."""
    model_args.check_flags()
    model_args.miracle_config_kwargs()  # checks its keys


def describe_model(model_args: ModelArguments, model, new_attribute, use_lora: bool, lora_given: bool = True) -> list[str]:
    """Summary lines on the model of a run (see `TrainingSummaryCallback`)."""
    config = model.config
    if model_args.from_model:
        lines = [f"  model: {model_args.from_model} (saved MIRACLE model)"]
    else:
        encoder = _backbone(model_args.encoder, "encoder")
        decoder = _backbone(model_args.decoder, "decoder")
        lines = [f"  model: new, encoder {encoder} ({config.encoder.model_type}), decoder {decoder} "
                 f"({config.decoder.model_type}), latent size {config.latent_size}"]
    lines.append(f"  attributes: {describe_attributes(config.attributes)}")
    if new_attribute:
        how = "its head only, on the frozen latent space" if model_args.train_head_only else "with the rest of the model"
        lines.append(f"  new attribute: {new_attribute[0]}, trained {how}")
    elif model_args.freeze_backbones:
        lines.append("  backbones frozen: MIRACLE's own layers train")
    if use_lora:
        lines.append(f"  LoRA: r={model_args.lora_r}, alpha={model_args.lora_alpha} on the decoder"
                     + (" and the encoders" if model_args.lora_encoders else "")
                     + ("" if lora_given else " (as the saved model was trained; --lora false trains every parameter)"))
    return lines


def describe_data(what: str, report: LoadReport, files: dict) -> str:
    per_attribute = ", ".join(f"{name} {count}" for name, count in report.dialogues_per_attribute.items())
    skipped = f"; skipped {report.skipped_rows} malformed rows" if report.skipped_rows else ""
    listed = "; ".join(f"{name}: {', '.join(map(str, [paths] if isinstance(paths, str) else paths))}"
                       for name, paths in files.items())
    return (f"  {what}: {report.examples:,} examples from {report.dialogues:,} dialogues ({per_attribute}){skipped}\n"
            f"    files: {listed}")


def check_launch(training_args: TrainingArguments) -> None:
    """Stop a multi-process launch that the Trainer would not train as one run.

    `accelerate launch --multi_gpu` (or `torchrun`) on a machine without GPUs starts the processes and a process
    group, but unless the Trainer is told to use the CPU (`--use_cpu true`) each process trains the whole data set
    on its own and all of them write the same output folder.
    """
    training_args.device  # sets up the process group the launcher asked for (as the Trainer would)
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    if torch.distributed.get_world_size() > 1 and training_args.parallel_mode != ParallelMode.DISTRIBUTED:
        raise ValueError(
            f"{torch.distributed.get_world_size()} processes were launched, but the Trainer does not see a "
            f"distributed run (parallel mode {training_args.parallel_mode.value!r}), so each process would train "
            "alone. On CPUs add `--use_cpu true` (gloo backend); on GPUs check that every process sees one."
        )


def run_train(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments,
              run_args: RunArguments | None = None) -> str:
    """Train as configured; returns the folder the final model was saved to.

    Runs as one process or under `accelerate launch` / `torchrun` (one process per device): every process builds
    the same model (seeded with `--seed`), the Trainer shards the batches, and only the main process writes files.
    Before anything is built the flags and the output folder are checked (a non-empty one needs
    `--resume_from_checkpoint` or `--overwrite_output_dir`); a summary (model, data, steps) is printed before the
    first step.
    """
    run_args = run_args or RunArguments()
    check_model_flags(model_args)
    lora_was_given = model_args.lora is not None
    resolve_lora(model_args)
    check_launch(training_args)
    if training_args.process_index == 0:
        resume = prepare_output_dir(training_args.output_dir, training_args.resume_from_checkpoint,
                                    run_args.overwrite_output_dir)
    else:
        resume = parse_resume(training_args.resume_from_checkpoint)
    set_seed(training_args.seed)  # the same fresh MIRACLE layers in every process and every run
    model, processor = build_model_and_processor(model_args)
    collator = MiracleDataCollator(processor, decoder_history_dropout=data_args.decoder_history_dropout,
                                   seed=training_args.seed)
    new_attribute = model_args.new_attribute()
    if new_attribute:
        collator = prepare_new_attribute(model, processor, *new_attribute, head_only=model_args.train_head_only)
    elif model_args.freeze_backbones:
        model.freeze_backbones()
    report = LoadReport()
    files = data_files_for(data_args, model.config.attributes)
    load = dict(attributes=model.config.attributes, hub_dataset=data_args.hub_dataset, skip_malformed=data_args.skip_malformed,
                expand_prefixes=data_args.expand_prefixes, max_dialogues_per_attribute=data_args.max_dialogues_per_attribute)
    train_dataset = load_miracle_dataset(files, report=report, **load)
    data_lines = [describe_data("training data", report, files)]
    eval_dataset = None
    if data_args.validation_files:
        validation_files = DataArguments.parse_pairs(data_args.validation_files)
        validation_report = LoadReport()
        eval_dataset = load_miracle_dataset(validation_files, report=validation_report, **load)
        data_lines.append(describe_data("validation data", validation_report, validation_files))

    use_lora = model_args.lora and not (new_attribute and model_args.train_head_only)
    trained = apply_lora(model, model_args.lora_r, model_args.lora_alpha, model_args.lora_dropout,
                         include_encoders=model_args.lora_encoders) if use_lora else model
    trainer = MiracleTrainer(
        model=trained,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collator,
        processing_class=processor,
        data_description=f"{report.dialogues} dialogues ({report.examples} examples) from {files}"
        + (f" in {data_args.hub_dataset}" if data_args.hub_dataset else ""),
        datasets=[data_args.hub_dataset] if data_args.hub_dataset else None,
        callbacks=[TrainingSummaryCallback(describe_model(model_args, model, new_attribute, use_lora, lora_was_given) + data_lines)]
        + ([AdapterFolderCallback(base_model_source(model_args))] if use_lora else []),
    )
    if use_lora and trainer.is_fsdp_enabled:
        raise ValueError(
            "`miracle train --lora true` does not run under FSDP: merging the adapters and saving them need the whole "
            "model in one process. Use DDP for LoRA runs (examples/accelerate_ddp.yaml; the trained part is small) "
            "or train without LoRA (`--lora false`) under FSDP."
        )
    trainer.train(resume_from_checkpoint=resume)
    output_dir = training_args.output_dir
    if use_lora:
        if trainer.is_world_process_zero():  # the adapter alone, also a loadable MIRACLE folder
            adapter_dir = os.path.join(output_dir, "adapter")
            trained.save_pretrained(adapter_dir)
            write_adapter_folder_config(model.config, adapter_dir, base_model_source(model_args))
            processor.save_pretrained(adapter_dir)
        model = trained.merge_and_unload()  # in every process (no files): save_model below writes on the main one
        trainer.model = model
    trainer.save_model(output_dir)
    trainer.create_model_card()
    if training_args.push_to_hub:
        trainer.push_to_hub()
    if trainer.is_world_process_zero():
        print(f"Saved the trained model and processor to {os.path.abspath(output_dir)}")
    return output_dir
