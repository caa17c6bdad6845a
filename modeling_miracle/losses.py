"""MIRACLE's training losses (paper eq. 3-5), as plain functions of tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_kl(mu_q, logvar_q, mu_p, logvar_p) -> torch.Tensor:
    """Per-dimension KL(N(mu_q, var_q) || N(mu_p, var_p)) of diagonal Gaussians, shape (B, latent)."""
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).pow(2)) / logvar_p.exp() - 1.0)


def free_bits_kl(kl_per_dim: torch.Tensor, threshold: float) -> torch.Tensor:
    """Thresholded KL: dimensions whose KL is below `threshold` are not penalised; sum over dims, batch mean."""
    mask = (kl_per_dim > threshold).to(kl_per_dim.dtype)
    return (kl_per_dim * mask).sum(-1).mean()


def reconstruction_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy over the positions whose label is not -100 (response + EOS)."""
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:].to(shift_logits.device)
    return F.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1), ignore_index=-100)


def aspect_classification_loss(
    aspect_logits: dict[str, torch.Tensor], attribute_ids: torch.Tensor, aspect_ids: torch.Tensor
) -> torch.Tensor:
    """L_C (eq. 4): cross-entropy of each row's own attribute head against its aspect; rows with aspect -100 are skipped."""
    total, rows = aspect_ids.new_zeros((), dtype=torch.float), 0
    for index, logits in enumerate(aspect_logits.values()):
        selected = (attribute_ids == index) & (aspect_ids != -100)
        if selected.any():
            total = total + F.cross_entropy(logits[selected].float(), aspect_ids[selected], reduction="sum")
            rows += int(selected.sum())
    return total / max(rows, 1)


def attribute_means(latent: torch.Tensor, attribute_ids: torch.Tensor, num_attributes: int):
    """Batch mean of z for each attribute, and which attributes occur in the batch."""
    one_hot = F.one_hot(attribute_ids.clamp(min=0), num_attributes).to(latent.dtype) * (attribute_ids >= 0).unsqueeze(-1)
    counts = one_hot.sum(0)
    means = one_hot.t() @ latent / counts.clamp(min=1).unsqueeze(-1)
    return means, counts > 0


def attribute_distance_loss(means: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """L_D (eq. 5): sum over attribute pairs a < b of the Euclidean distance between their mean latents."""
    index = torch.nonzero(present).flatten()
    if index.numel() < 2:
        return means.new_zeros(())
    selected = means[index]
    pairs = torch.triu_indices(len(index), len(index), offset=1, device=means.device)
    return (selected[pairs[0]] - selected[pairs[1]]).norm(dim=-1).sum()


def bag_of_words_loss(bow_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Bag-of-words loss (Zhao et al. 2017): mean negative log-probability, under one vocabulary distribution per
    row predicted from z alone, of the row's response tokens (labels other than -100)."""
    log_probs = torch.log_softmax(bow_logits.float(), dim=-1)
    mask = labels != -100
    picked = log_probs.gather(1, labels.clamp(min=0).to(log_probs.device))
    return -(picked * mask).sum() / mask.sum().clamp(min=1)
