"""Teaching a trained MIRACLE model a new personal attribute (paper appendix C.2 trains latent heads this way)."""

from __future__ import annotations

from .collator import MiracleDataCollator


def prepare_new_attribute(model, processor, name: str, aspects: list[str], head_only: bool = True) -> MiracleDataCollator:
    """Add attribute `name` with `aspects` to `model` and return the data collator to train it with.

    `head_only=True` freezes everything but the new head and trains it on the frozen latent space: batches carry
    no decoder inputs, so nothing is decoded and only L_C reaches the head. `head_only=False` keeps the whole
    model trainable (or wrap it with `apply_lora` afterwards to train adapters with the head).
    """
    model.add_attribute(name, aspects)
    if head_only:
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        for parameter in model.attribute_heads.heads[name].parameters():
            parameter.requires_grad_(True)
    return MiracleDataCollator(processor, latent_only=head_only)
