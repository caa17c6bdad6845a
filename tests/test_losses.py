import math

import torch

from modeling_miracle.losses import (
    aspect_classification_loss,
    attribute_distance_loss,
    attribute_means,
    free_bits_kl,
    gaussian_kl,
)


def test_gaussian_kl_matches_closed_form():
    mu_q, logvar_q = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.2, -0.3]])
    mu_p, logvar_p = torch.tensor([[0.0, 0.5]]), torch.tensor([[0.0, 0.4]])
    expected = []
    for i in range(2):
        vq, vp = math.exp(logvar_q[0, i]), math.exp(logvar_p[0, i])
        expected.append(0.5 * (math.log(vp / vq) + (vq + (mu_q[0, i] - mu_p[0, i]) ** 2) / vp - 1))
    assert torch.allclose(gaussian_kl(mu_q, logvar_q, mu_p, logvar_p)[0], torch.tensor(expected), atol=1e-6)


def test_free_bits_kl_by_hand():
    kl = torch.tensor([[0.5, 1.2, 0.95, 2.0], [0.1, 0.0, 3.0, 0.89]])
    # Row 1 keeps 1.2 + 0.95 + 2.0 = 4.15, row 2 keeps 3.0; batch mean = 3.575.
    assert math.isclose(free_bits_kl(kl, 0.9).item(), 3.575, rel_tol=1e-6)
    assert math.isclose(free_bits_kl(kl, 0.0).item(), kl[kl > 0].sum().item() / 2, rel_tol=1e-6)


def test_classification_loss_uses_each_rows_own_head():
    logits = {"a": torch.tensor([[2.0, 0.0], [0.0, 0.0], [5.0, 5.0]]), "b": torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 3.0]])}
    attribute_ids = torch.tensor([0, 1, 1])
    aspect_ids = torch.tensor([1, 0, -100])
    expected = (
        torch.nn.functional.cross_entropy(logits["a"][:1], torch.tensor([1]))
        + torch.nn.functional.cross_entropy(logits["b"][1:2], torch.tensor([0]))
    ) / 2
    assert torch.allclose(aspect_classification_loss(logits, attribute_ids, aspect_ids), expected)


def test_distance_loss_sums_pairwise_mean_distances():
    z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 3.0], [0.0, 1.0]])
    means, present = attribute_means(z, torch.tensor([0, 0, 1, 1]), 3)
    assert torch.allclose(means[:2], torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    assert present.tolist() == [True, True, False]
    assert math.isclose(attribute_distance_loss(means, present).item(), math.sqrt(5), rel_tol=1e-6)
    assert attribute_distance_loss(means, torch.tensor([True, False, False])).item() == 0.0
