"""`miracle train`: build or load a MIRACLE model, load data, train with `MiracleTrainer`, save (and push)."""

from __future__ import annotations

import os

import torch
from transformers import AutoTokenizer, TrainingArguments, set_seed
from transformers.training_args import ParallelMode

from .arguments import DataArguments, ModelArguments
from .collator import MiracleDataCollator
from .data import AUTHORS_HUB_DATASET, AUTHORS_HUB_FILES, LoadReport, corpus_files, load_miracle_dataset
from .new_attribute import prepare_new_attribute
from .peft_utils import apply_lora
from .trainer import MiracleTrainer


def _backbone(name: str | None, kind: str) -> tuple[str, dict]:
    from modeling_miracle.backbones import minilm_folder, smollm2_folder

    if name in (None, "default"):
        return str(minilm_folder() if kind == "encoder" else smollm2_folder()), {}
    return name, {}


def build_model_and_processor(model_args: ModelArguments):
    """A fresh model from backbones, or a saved one (optionally with a new attribute); and its processor."""
    from modeling_miracle import MiracleForPersonalizedGeneration, MiracleProcessor

    limits = dict(max_encoder_length=model_args.max_encoder_length, max_prompt_length=model_args.max_prompt_length,
                  max_response_length=model_args.max_response_length)
    if model_args.from_model:
        model = MiracleForPersonalizedGeneration.from_pretrained(model_args.from_model)
        processor = MiracleProcessor.from_pretrained(model_args.from_model, **limits)
        return model, processor
    encoder, _ = _backbone(model_args.encoder, "encoder")
    decoder, _ = _backbone(model_args.decoder, "decoder")
    decoder_kwargs = {"gguf_file": model_args.decoder_gguf_file} if model_args.decoder_gguf_file else {}
    model = MiracleForPersonalizedGeneration.from_encoder_decoder_pretrained(
        encoder, decoder, attributes=model_args.attributes_mapping(), decoder_kwargs=decoder_kwargs,
        **model_args.miracle_config_kwargs(),
    )
    processor = MiracleProcessor(AutoTokenizer.from_pretrained(encoder),
                                 AutoTokenizer.from_pretrained(decoder, **decoder_kwargs), **limits)
    return model, processor


def data_files_for(data_args: DataArguments, attributes: dict) -> dict:
    if data_args.data_files:
        return DataArguments.parse_pairs(data_args.data_files)
    if data_args.hub_dataset == AUTHORS_HUB_DATASET:
        return {a: f for a, f in AUTHORS_HUB_FILES.items() if a in attributes}
    if data_args.hub_dataset:
        raise ValueError("With --hub-dataset other than the authors' corpus, name the files: --data-files attribute=file.")
    return corpus_files("train")


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


def run_train(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments) -> str:
    """Train as configured; returns the folder the final model was saved to.

    Runs as one process or under `accelerate launch` / `torchrun` (one process per device): every process builds
    the same model (seeded with `--seed`), the Trainer shards the batches, and only the main process writes files.
    """
    check_launch(training_args)
    set_seed(training_args.seed)  # the same fresh MIRACLE layers in every process and every run
    model, processor = build_model_and_processor(model_args)
    collator = MiracleDataCollator(processor)
    new_attribute = model_args.new_attribute()
    if new_attribute:
        collator = prepare_new_attribute(model, processor, *new_attribute, head_only=model_args.train_head_only)
    elif model_args.freeze_backbones:
        for module in (model.prior_encoder, model.get_posterior_encoder(), model.decoder):
            module.requires_grad_(False)
    report = LoadReport()
    files = data_files_for(data_args, model.config.attributes)
    load = dict(attributes=model.config.attributes, hub_dataset=data_args.hub_dataset, skip_malformed=data_args.skip_malformed,
                expand_prefixes=data_args.expand_prefixes, max_dialogues_per_attribute=data_args.max_dialogues_per_attribute)
    train_dataset = load_miracle_dataset(files, report=report, **load)
    eval_dataset = None
    if data_args.validation_files:
        eval_dataset = load_miracle_dataset(DataArguments.parse_pairs(data_args.validation_files), **load)
    if training_args.process_index == 0:
        print(f"Training data: {report.examples} examples from {report.dialogues} dialogues"
              + (f"; skipped {report.skipped_rows} malformed rows" if report.skipped_rows else ""))

    use_lora = model_args.lora and not (new_attribute and model_args.train_head_only)
    trained = apply_lora(model, model_args.lora_r, model_args.lora_alpha, model_args.lora_dropout,
                         include_encoders=model_args.lora_encoders) if use_lora else model
    training_args.remove_unused_columns = False
    trainer = MiracleTrainer(
        model=trained,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collator,
        processing_class=processor,
        data_description=f"{report.dialogues} dialogues ({report.examples} examples) from {files}"
        + (f" in {data_args.hub_dataset}" if data_args.hub_dataset else ""),
    )
    if use_lora and trainer.is_fsdp_enabled:
        raise ValueError(
            "`miracle train --lora true` does not run under FSDP: merging the adapters and saving them need the whole "
            "model in one process. Use DDP for LoRA runs (examples/accelerate_ddp.yaml; the trained part is small) "
            "or train without LoRA (`--lora false`) under FSDP."
        )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    output_dir = training_args.output_dir
    if use_lora:
        if trainer.is_world_process_zero():
            trained.save_pretrained(os.path.join(output_dir, "adapter"))
        model = trained.merge_and_unload()  # in every process (no files): save_model below writes on the main one
        trainer.model = model
    trainer.save_model(output_dir)
    trainer.create_model_card()
    if training_args.push_to_hub:
        trainer.push_to_hub()
    if trainer.is_world_process_zero():
        print(f"Saved the trained model and processor to {os.path.abspath(output_dir)}")
    return output_dir
