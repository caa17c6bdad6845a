"""Guidance distillation: teach a MIRACLE decoder to give, in one pass at z, the next-token distribution that a
frozen teacher gives with latent guidance, `l_T(z) + s (l_T(z) - l_T(z_away))` (plausibility constraint included).

Latent guidance decodes every row twice (under z and under z moved away from the personality); a distilled model
shows the personality at the cost of plain decoding. Not in the paper: an option of the training side only.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F

from ..modeling_miracle import MiracleForPersonalizedGeneration
from .trainer import MiracleTrainer


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) of the next-token distributions, averaged over the positions that predict a label
    (labels != -100, shifted as in the reconstruction loss). Tokens the teacher rules out (probability 0) add 0."""
    predicts_label = labels[:, 1:] != -100
    student = student_logits[:, :-1][predicts_label].float().log_softmax(-1)
    teacher = teacher_logits[:, :-1][predicts_label].float().log_softmax(-1)
    if student.shape[0] == 0:
        return student_logits.sum() * 0.0
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean")


def random_personalities(attributes: dict[str, list[str]], batch_size: int, rng: random.Random,
                         partial_share: float = 0.0) -> list[dict[str, str]]:
    """One personality per row, each aspect uniform; a `partial_share` of rows name a random non-empty subset of
    the attributes only."""
    rows = []
    for _ in range(batch_size):
        names = list(attributes)
        if len(names) > 1 and rng.random() < partial_share:
            names = rng.sample(names, rng.randint(1, len(names) - 1))
        rows.append({name: rng.choice(attributes[name]) for name in attributes if name in names})
    return rows


class GuidanceDistillationTrainer(MiracleTrainer):
    """A [`MiracleTrainer`] whose loss is [`distillation_loss`] against a frozen `teacher` decoding with latent
    guidance. Each row gets a random personality; the teacher samples z with its EBM ODE (and the opposite z), and
    the student decodes the same batch at the same z in one pass. The collator's responses give the token
    sequences (teacher forcing); their own aspects do not matter.

    Args (beyond `MiracleTrainer`'s):
        teacher: the guided MIRACLE model (kept frozen, in eval mode).
        guidance_scale / guidance_plausibility: the teacher's guidance (default: its config's).
        partial_share: share of rows whose personality names only some attributes.
    """

    def __init__(self, *args, teacher, guidance_scale: float | None = None, guidance_plausibility: float | None = None,
                 partial_share: float = 0.25, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher = teacher.eval().requires_grad_(False)
        config = teacher.config
        self.guidance_scale = config.latent_guidance_scale if guidance_scale is None else guidance_scale
        self.guidance_plausibility = config.latent_guidance_plausibility if guidance_plausibility is None else guidance_plausibility
        if not self.guidance_scale > 0:
            raise ValueError(f"Guidance distillation needs a teacher guidance scale > 0; got {self.guidance_scale}.")
        self.partial_share = partial_share
        self._rng = random.Random(self.args.seed)

    @torch.no_grad()
    def teacher_step(self, inputs: dict, window: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, the teacher's guided logits over the last `window` positions) for a batch with random personalities."""
        teacher = self.teacher
        personality = random_personalities(teacher.config.attributes, inputs["input_ids"].shape[0], self._rng,
                                           self.partial_share)
        prior = (inputs["prior_input_ids"], inputs["prior_attention_mask"])
        sample = teacher.sample_latent(*prior, personality=personality)
        away = teacher.opposite_latent(sample)
        logits = teacher(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], latent=sample.latent,
                         guidance_latent=away, latent_guidance_scale=self.guidance_scale,
                         latent_guidance_plausibility=self.guidance_plausibility, logits_to_keep=window).logits
        return sample.latent, logits

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        window = MiracleForPersonalizedGeneration._label_window(labels)  # responses end the left-padded rows
        latent, teacher_logits = self.teacher_step(inputs, window)
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], latent=latent,
                        logits_to_keep=window)
        loss = distillation_loss(outputs.logits, teacher_logits, labels[:, -window:])
        return (loss, outputs) if return_outputs else loss
