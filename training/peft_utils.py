"""LoRA for MIRACLE with PEFT: adapters on the decoder (optionally the encoders); MIRACLE's own layers
(Gaussian heads, latent injection, attribute heads) stay fully trained and are saved with the adapter."""

from __future__ import annotations

import re

from peft import LoraConfig, PeftModel, get_peft_model
from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

MIRACLE_MODULES = ["prior_head", "posterior_head", "latent_injection", "attribute_heads", "bow_head"]
CONV1D_MODEL_TYPES = {"gpt2"}  # GPT-2 keeps its attention weights in Conv1D (fan_in_fan_out)


def default_targets(model_type: str) -> list[str]:
    """PEFT's default LoRA target module names for a backbone type."""
    if model_type not in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING:
        raise ValueError(f"No default LoRA targets for model type {model_type!r}; pass `target_modules` (module names).")
    return list(TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING[model_type])


def lora_target_regex(model, decoder_targets=None, encoder_targets=None, include_encoders: bool = False) -> str:
    """A regex matching the decoder's (and optionally the encoders') target layers by full module name."""
    config = model.config
    parts = [rf"decoder\..*\.({'|'.join(map(re.escape, decoder_targets or default_targets(config.decoder.model_type)))})"]
    if include_encoders:
        names = "|".join(map(re.escape, encoder_targets or default_targets(config.encoder.model_type)))
        parts.append(rf"(prior_encoder|posterior_encoder)\..*\.({names})")
    return "|".join(f"(?:{p})" for p in parts)


def apply_lora(
    model,
    r: int = 16,
    lora_alpha: int = 32,
    lora_dropout: float = 0.05,
    decoder_targets: list[str] | None = None,
    include_encoders: bool = False,
    encoder_targets: list[str] | None = None,
) -> PeftModel:
    """Wrap a MIRACLE model with LoRA adapters on the decoder (and the encoders with `include_encoders`).

    Backbone weights freeze; the adapters and MIRACLE's own layers train. GPT-2's Conv1D layers get
    `fan_in_fan_out=True`. Save with `.save_pretrained(folder)`; reload with [`load_lora`].
    """
    if include_encoders and model.config.encoder.model_type in CONV1D_MODEL_TYPES:
        raise ValueError("Encoders with Conv1D layers are not supported for LoRA here.")
    config = LoraConfig(
        r=r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=lora_target_regex(model, decoder_targets, encoder_targets, include_encoders),
        modules_to_save=[name for name in MIRACLE_MODULES if getattr(model, name, None) is not None],
        fan_in_fan_out=model.config.decoder.model_type in CONV1D_MODEL_TYPES,
    )
    return get_peft_model(model, config)


def load_lora(base_model, adapter_path: str, is_trainable: bool = False) -> PeftModel:
    """Load LoRA adapters (and MIRACLE's layers saved with them) onto a base MIRACLE model."""
    return PeftModel.from_pretrained(base_model, adapter_path, is_trainable=is_trainable)
