"""Every `checkpoint-N` of a LoRA run as a loadable MIRACLE folder: PEFT writes the adapter (with MIRACLE's own
layers); this callback adds the config that names the base model (see `modeling_miracle.adapter_folders`)."""

from __future__ import annotations

import os

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..adapter_folders import write_adapter_folder_config


class AdapterFolderCallback(TrainerCallback):
    """On each save, writes the MIRACLE config (with `base_model_source`) into the new `checkpoint-N`, beside the
    adapter and the processor the Trainer wrote, so `from_pretrained`, `pipeline(model=...)` and
    `miracle evaluate --model` load it on its own."""

    def __init__(self, base_model_source: dict):
        self.base_model_source = base_model_source

    def on_save(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero and model is not None:
            folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            write_adapter_folder_config(base.config, folder, self.base_model_source)


__all__ = ["AdapterFolderCallback"]
