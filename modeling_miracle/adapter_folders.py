"""Saved MIRACLE folders that hold the backbones by reference ("adapter folders").

Such a folder is an ordinary saved MIRACLE folder without the backbone weights: `config.json` (a `MiracleConfig`
whose `base_model_source` says where the backbones come from), the PEFT adapter written by PEFT's own
`save_pretrained` (`adapter_config.json` + `adapter_model.safetensors`, which also hold MIRACLE's own layers as
`modules_to_save`), the processor and, optionally, `generation_config.json` (decoding defaults). A LoRA run's
`checkpoint-N` is one; so is a converted default model. Loading rebuilds the base model from the reference, loads
the adapter with `PeftModel.from_pretrained` and merges it (`merge_and_unload`), the sequence the default model has
always been loaded with, so replies do not change.

Older default-model parts (adapter + `miracle_settings.json`, in the folder or, for a `checkpoint-N`, its parent)
keep loading through `default_model.load_default_model`.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

from .configuration import MiracleConfig

ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
LEGACY_SETTINGS_NAME = "miracle_settings.json"
GENERATION_CONFIG_NAME = "generation_config.json"
FULL_WEIGHTS_NAMES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                      "pytorch_model.bin.index.json")
PACKAGED_BACKBONE = "default"
# MiracleConfig fields that are not MIRACLE settings: the backbones' own configs, the reference, the token ids
# (taken from the decoder).
_NOT_SETTINGS = ("encoder", "decoder", "base_model_source", "pad_token_id", "eos_token_id", "bos_token_id",
                 "tie_word_embeddings")


def _local_folder(path) -> Path | None:
    if not isinstance(path, (str, os.PathLike)):
        return None
    folder = Path(path)
    return folder if folder.is_dir() else None


def _has_adapter_without_full_weights(folder: Path) -> bool:
    return (folder / ADAPTER_WEIGHTS_NAME).is_file() and not any((folder / n).is_file() for n in FULL_WEIGHTS_NAMES)


def is_adapter_folder(path) -> bool:
    """Whether `path` is a local MIRACLE folder with the backbones by reference (config + adapter, no full weights)."""
    folder = _local_folder(path)
    return folder is not None and (folder / "config.json").is_file() and _has_adapter_without_full_weights(folder)


def legacy_settings_file(path) -> Path | None:
    """`miracle_settings.json` of older default-model parts at `path` (in the folder, or in the parent folder of a
    training checkpoint), or None when `path` is not such a folder."""
    folder = _local_folder(path)
    if folder is None or (folder / "config.json").is_file() or not _has_adapter_without_full_weights(folder):
        return None
    return next((f / LEGACY_SETTINGS_NAME for f in (folder, folder.parent) if (f / LEGACY_SETTINGS_NAME).is_file()),
                None)


def backbones_reference(encoder: str | None = None, decoder: str | None = None,
                        decoder_gguf_file: str | None = None) -> dict:
    """A `base_model_source` naming the backbones (None / "default" = the packaged offline one; local paths are
    made absolute so the reference holds from any working directory)."""

    def name(value):
        if value in (None, PACKAGED_BACKBONE):
            return PACKAGED_BACKBONE
        return str(Path(value).resolve()) if Path(value).exists() else str(value)

    reference = {"encoder": name(encoder), "decoder": name(decoder)}
    if decoder_gguf_file:
        reference["decoder_gguf_file"] = decoder_gguf_file
    return reference


def miracle_reference(path: str | os.PathLike) -> dict:
    """A `base_model_source` naming a saved MIRACLE model (a run that started from one)."""
    return {"miracle": str(Path(path).resolve()) if Path(path).exists() else str(path)}


def miracle_settings(config: MiracleConfig) -> dict:
    """The MIRACLE settings of a config (attributes, latent size, losses, sampler, ...), without the backbones."""
    return {name: getattr(config, name) for name in MiracleConfig.__annotations__ if name not in _NOT_SETTINGS}


def _resolve_backbone(name: str, kind: str) -> str:
    from .backbones import minilm_folder, smollm2_folder

    if name == PACKAGED_BACKBONE:
        return str(minilm_folder() if kind == "encoder" else smollm2_folder())
    return name


def build_base_model(config: MiracleConfig):
    """The model the adapter of a folder with `config` applies to: backbones (pretrained) + MIRACLE's layers (fresh,
    overwritten by the adapter's `modules_to_save`), or the saved MIRACLE model the run started from."""
    from .modeling_miracle import MiracleForPersonalizedGeneration

    source = config.base_model_source
    if source is None:
        raise ValueError("This config has no `base_model_source`: its folder must hold the full weights.")
    settings = miracle_settings(config)
    if "miracle" in source:
        base = MiracleForPersonalizedGeneration.from_pretrained(source["miracle"])
        for name, aspects in config.attributes.items():  # a run that added an attribute (its head is in the adapter)
            if name not in base.config.attributes:
                base.add_attribute(name, aspects)
        for name, value in settings.items():
            setattr(base.config, name, value)
        return base
    decoder_kwargs = {"gguf_file": source["decoder_gguf_file"]} if source.get("decoder_gguf_file") else {}
    attributes = settings.pop("attributes")
    return MiracleForPersonalizedGeneration.from_encoder_decoder_pretrained(
        _resolve_backbone(source["encoder"], "encoder"), _resolve_backbone(source["decoder"], "decoder"),
        attributes=attributes, decoder_kwargs=decoder_kwargs, **settings,
    ).freeze_backbones()


def apply_generation_defaults(model, folder: str | os.PathLike) -> None:
    """The decoding defaults chosen for a folder's weights (`generation_config.json` beside them, e.g.
    `no_repeat_ngram_size`), on top of the decoder's own generation config (its special tokens stay)."""
    path = Path(folder) / GENERATION_CONFIG_NAME
    if path.is_file():
        defaults = {k: v for k, v in json.loads(path.read_text()).items() if k != "transformers_version"}
        model.generation_config.update(**defaults)


def load_adapter_folder(path: str | os.PathLike, config: MiracleConfig | None = None, dtype=None):
    """A MIRACLE model from an adapter folder: base rebuilt from `config.base_model_source`, PEFT adapter loaded
    and merged, the folder's generation defaults applied; in eval mode."""
    import torch
    from peft import PeftModel

    folder = Path(path)
    config = config if config is not None else MiracleConfig.from_pretrained(folder)
    model = PeftModel.from_pretrained(build_base_model(config), str(folder)).merge_and_unload().eval()
    apply_generation_defaults(model, folder)
    if dtype is not None and dtype != "auto":
        model = model.to(getattr(torch, dtype) if isinstance(dtype, str) else dtype)
    model.name_or_path = model.config._name_or_path = str(folder)
    return model


def write_adapter_folder_config(config: MiracleConfig, folder: str | os.PathLike, base_model_source: dict) -> None:
    """Make a folder that PEFT's `save_pretrained` wrote (adapter files) loadable as a MIRACLE model: writes its
    config with `base_model_source`."""
    saved = copy.deepcopy(config)
    saved.base_model_source = base_model_source
    saved.save_pretrained(folder)


def convert_default_model_parts(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Write older default-model parts (adapter + `miracle_settings.json`) as an adapter folder at `target` that
    `from_pretrained`, `pipeline(model=target)` and `AutoProcessor` load: the adapter files are copied, the config
    and processor are written. The loaded model is the same as `load_default_model(source)`'s."""
    from .default_model import build_default_backbone_model, default_processor

    settings_file = legacy_settings_file(source)
    if settings_file is None:
        raise FileNotFoundError(f"{source} holds no default-model parts (adapter + {LEGACY_SETTINGS_NAME}).")
    settings = json.loads(settings_file.read_text())
    base = build_default_backbone_model(**settings["config"])
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    write_adapter_folder_config(base.config, target, backbones_reference())
    for name in (ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, GENERATION_CONFIG_NAME):
        if (Path(source) / name).is_file():
            shutil.copyfile(Path(source) / name, target / name)
    default_processor().save_pretrained(target)
    return target


__all__ = [
    "backbones_reference",
    "build_base_model",
    "convert_default_model_parts",
    "is_adapter_folder",
    "legacy_settings_file",
    "load_adapter_folder",
    "miracle_reference",
    "miracle_settings",
    "write_adapter_folder_config",
]
