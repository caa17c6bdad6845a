"""The offline default model: packaged MiniLM encoder + SmolLM2-135M-Instruct decoder, with MIRACLE's trained
parts (latent maps, heads, decoder LoRA) shipped in this package as a small safetensors file."""

from __future__ import annotations

import json
from pathlib import Path

from .adapter_folders import apply_generation_defaults, is_adapter_folder, legacy_settings_file, load_adapter_folder
from .backbones import minilm_folder, smollm2_folder
from .configuration import PAPER_ATTRIBUTES
from .processing_miracle import MiracleProcessor

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
# MIRACLE settings of the default model (the backbones are frozen; LoRA on the decoder). Trained for minutes on a
# CPU, not hours on GPUs: L_C is weighted up (5) and L_D down (0.1), and each KL cycle starts with a zero phase,
# otherwise the KL term erases the aspect signal before the heads learn it (measured on the corpus: L_C stayed at
# ln 2 for 70 steps with the paper's unit weights, and fell to 0.24 in 90 steps with these).
DEFAULT_CONFIG = {
    "latent_size": 128,
    "head_hidden_size": 256,
    "share_encoder": True,
    "kl_num_cycles": 2,
    "kl_zero_ratio": 0.25,
    "kl_ramp_ratio": 0.25,
    "classification_loss_weight": 5.0,
    "distance_loss_weight": 0.1,
}
DEFAULT_LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05}


def default_processor(**kwargs) -> MiracleProcessor:
    """Processor of the default backbones (MiniLM WordPiece + SmolLM2 chat-template tokenizer)."""
    from transformers import AutoTokenizer, BertTokenizerFast

    kwargs.setdefault("max_encoder_length", 256)
    kwargs.setdefault("max_prompt_length", 384)
    kwargs.setdefault("max_response_length", 96)
    return MiracleProcessor(BertTokenizerFast.from_pretrained(minilm_folder()), AutoTokenizer.from_pretrained(smollm2_folder()), **kwargs)


def build_default_backbone_model(**config_overrides):
    """A fresh MIRACLE model on the default backbones (MIRACLE layers random), backbones frozen."""
    from .modeling_miracle import MiracleForPersonalizedGeneration

    settings = {**DEFAULT_CONFIG, **config_overrides}
    model = MiracleForPersonalizedGeneration.from_encoder_decoder_pretrained(
        str(minilm_folder()), str(smollm2_folder()), attributes=settings.pop("attributes", PAPER_ATTRIBUTES), **settings
    )
    return model.freeze_backbones()


def load_default_model(path: str | Path | None = None):
    """(model, processor) of the default model, ready to generate; backbones come from their packages."""
    from peft import PeftModel

    folder = Path(path) if path is not None else DEFAULT_MODEL_DIR
    if is_adapter_folder(folder):  # parts saved as an ordinary MIRACLE folder (backbones by reference)
        return load_adapter_folder(folder), MiracleProcessor.from_pretrained(folder)
    if not (folder / "adapter_model.safetensors").is_file():
        raise FileNotFoundError(
            f"No trained default-model parts in {folder}; train them with `python examples/train_default_model.py`."
        )
    # A training checkpoint (`<work-dir>/checkpoint-N`) finds the run's settings in its parent folder.
    settings_file = next((f / "miracle_settings.json" for f in (folder, folder.parent) if (f / "miracle_settings.json").is_file()), None)
    if settings_file is None:
        raise FileNotFoundError(f"No miracle_settings.json in {folder} or its parent folder: not default-model parts.")
    settings = json.loads(settings_file.read_text())
    base = build_default_backbone_model(**settings["config"])
    model = PeftModel.from_pretrained(base, str(folder)).merge_and_unload().eval()
    apply_generation_defaults(model, folder)
    return model, default_processor()


def load_model_and_processor(path: str | Path | None = None):
    """(model, processor) of a saved MIRACLE folder: a full one, one with the backbones by reference (config +
    PEFT adapter, e.g. a LoRA run's `checkpoint-N`, see `adapter_folders`), older default-model parts (a folder
    with the adapter and `miracle_settings.json`), or the packaged default model when `path` is None."""
    if path is None or legacy_settings_file(path) is not None:
        return load_default_model(path)
    from .modeling_miracle import MiracleForPersonalizedGeneration

    model = MiracleForPersonalizedGeneration.from_pretrained(path).eval()
    return model, MiracleProcessor.from_pretrained(path)
