"""The small trainable pieces MIRACLE adds around its backbones: Gaussian heads, latent injection, aspect heads."""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from transformers import DynamicCache, PreTrainedConfig


def pool_hidden_states(hidden_states: torch.Tensor, attention_mask: torch.Tensor, mode: str = "mean") -> torch.Tensor:
    """Pool encoder states (B, T, H) to (B, H): masked mean over real tokens, or the first token (`"cls"`)."""
    if mode == "cls":
        return hidden_states[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden_states.dtype)
    return (hidden_states * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class GaussianHead(nn.Module):
    """Linear map of a pooled encoding to the (mu, logvar) of a diagonal Gaussian."""

    # On pretrained encoders the heads start narrow (sigma ~ 0.14), so that z carries the encoders' signal from the
    # first step instead of unit noise; z's scale is free (the KL compares two learned Gaussians).
    initial_logvar = -4.0

    def __init__(self, hidden_size: int, latent_size: int):
        super().__init__()
        self.proj = nn.Linear(hidden_size, 2 * latent_size)

    def reset_parameters(self) -> None:
        latent_size = self.proj.out_features // 2
        nn.init.normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias[:latent_size])
        nn.init.constant_(self.proj.bias[latent_size:], self.initial_logvar)

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # In the weights' precision even under mixed-precision autocast: mu and logvar set z and the KL, whose
        # per-dimension terms (1 - variance and mean ratios) lose most of their digits in bfloat16.
        with torch.autocast(pooled.device.type, enabled=False):
            mu, logvar = self.proj(pooled.to(self.proj.weight.dtype)).chunk(2, dim=-1)
        return mu, logvar


def decoder_cache_shape(decoder_config: PreTrainedConfig) -> tuple[int, int, int]:
    """(layers, key/value heads, head size) of a decoder, for GPT-2-, Llama- and most other causal LM configs."""
    layers = decoder_config.num_hidden_layers
    heads = decoder_config.num_attention_heads
    kv_heads = getattr(decoder_config, "num_key_value_heads", None) or heads
    head_dim = getattr(decoder_config, "head_dim", None) or decoder_config.hidden_size // heads
    return layers, kv_heads, head_dim


def decoder_blocks(decoder) -> nn.ModuleList:
    """The transformer blocks of a causal LM: Llama-style `model.layers` or GPT-2-style `transformer.h`."""
    base = getattr(decoder, "model", None) or getattr(decoder, "transformer", None)
    blocks = getattr(base, "layers", None) if base is not None else None
    if blocks is None and base is not None:
        blocks = getattr(base, "h", None)
    if blocks is None:
        raise ValueError(f"Cannot find the transformer blocks of {type(decoder).__name__} (looked for "
                         "`model.layers` and `transformer.h`).")
    return blocks


def _add_offset(output, offset: torch.Tensor):
    """A block's output with `offset` (batch, 1, hidden) added to its hidden states (tensor or tuple output)."""
    if isinstance(output, tuple):
        return (output[0] + offset.to(output[0].dtype),) + tuple(output[1:])
    return output + offset.to(output.dtype)


class LatentInjection(nn.Module):
    """How z reaches the decoder: added to every input embedding, `prefix_positions` virtual keys/values per layer,
    and/or (`residual_layers`) a learned offset `W_l z` added to the residual stream after decoder block l at every
    position (where activation steering acts, but computed from z)."""

    def __init__(self, latent_size: int, decoder_config: PreTrainedConfig, add_to_embeddings: bool, use_prefix: bool,
                 prefix_positions: int = 1, residual_layers: list[int] | tuple[int, ...] = ()):
        super().__init__()
        self.decoder_config = decoder_config
        self.layers, self.kv_heads, self.head_dim = decoder_cache_shape(decoder_config)
        self.prefix_positions = prefix_positions
        self.to_embedding = nn.Linear(latent_size, decoder_config.hidden_size) if add_to_embeddings else None
        self.to_prefix = (
            nn.Linear(latent_size, self.layers * 2 * self.kv_heads * prefix_positions * self.head_dim) if use_prefix else None
        )
        invalid = [layer for layer in residual_layers or () if not 0 <= layer < self.layers]
        if invalid:
            raise ValueError(f"`latent_residual_layers` {invalid} out of range: the decoder has blocks 0..{self.layers - 1}.")
        self.to_residual = nn.ModuleDict(
            {str(layer): nn.Linear(latent_size, decoder_config.hidden_size) for layer in sorted(set(residual_layers or ()))}
        ) if residual_layers else None

    def reset_parameters(self) -> None:
        """Start as a no-op on a pretrained decoder: zero embedding and residual offsets and a zero prefix value
        (the prefix key starts small, so the prefix takes little attention until trained)."""
        residual = list(self.to_residual.values()) if self.to_residual is not None else []
        for linear in [self.to_embedding, self.to_prefix, *residual]:
            if linear is not None:
                nn.init.zeros_(linear.weight)
                nn.init.zeros_(linear.bias)

    @contextlib.contextmanager
    def residual_offsets(self, decoder, latent: torch.Tensor, scale: float = 1.0):
        """While open, decoder block l adds `scale * W_l z` (one row per batch row) to its output at every position.
        A no-op without `residual_layers`."""
        if self.to_residual is None:
            yield
            return
        blocks = decoder_blocks(decoder)
        handles = []
        try:
            for layer, linear in self.to_residual.items():
                offset = (scale * linear(latent.to(linear.weight.dtype))).unsqueeze(1)
                handles.append(blocks[int(layer)].register_forward_hook(
                    lambda module, args, output, offset=offset: _add_offset(output, offset)))
            yield
        finally:
            for handle in handles:
                handle.remove()

    @property
    def prefix_length(self) -> int:
        return self.prefix_positions if self.to_prefix is not None else 0

    def add_to_embeddings(self, inputs_embeds: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        if self.to_embedding is None:
            return inputs_embeds
        return inputs_embeds + self.to_embedding(latent).unsqueeze(1).to(inputs_embeds.dtype)

    def prefix_cache(self, latent: torch.Tensor, dtype: torch.dtype) -> DynamicCache:
        """A fresh `DynamicCache` holding the latent keys/values of every layer (B x kv_heads x positions x head_dim)."""
        batch = latent.shape[0]
        kv = self.to_prefix(latent).to(dtype).view(
            batch, self.layers, 2, self.kv_heads, self.prefix_positions, self.head_dim
        )
        cache = DynamicCache(config=self.decoder_config)
        for layer in range(self.layers):
            cache.update(kv[:, layer, 0], kv[:, layer, 1], layer)
        return cache


class AttributeHeads(nn.Module):
    """One two-layer MLP classifier f_i: latent -> hidden -> n_aspects per attribute."""

    def __init__(self, attributes: dict[str, list[str]], latent_size: int, hidden_size: int):
        super().__init__()
        self.heads = nn.ModuleDict(
            {name: self.make_head(latent_size, hidden_size, len(aspects)) for name, aspects in attributes.items()}
        )

    @staticmethod
    def make_head(latent_size: int, hidden_size: int, num_aspects: int) -> nn.Sequential:
        return nn.Sequential(nn.Linear(latent_size, hidden_size), nn.GELU(), nn.Linear(hidden_size, num_aspects))

    def forward(self, latent: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits of every attribute's aspects for a batch of latents."""
        return {name: head(latent) for name, head in self.heads.items()}
