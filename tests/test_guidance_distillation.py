"""Guidance distillation: the loss, the random personalities and a few real training steps on tiny models."""

import random

import pytest
import torch
from transformers import TrainingArguments

from modeling_miracle.training import MiracleDataCollator
from modeling_miracle.training.guidance_distillation import (
    GuidanceDistillationTrainer,
    distillation_loss,
    random_personalities,
)

from .conftest import CONVERSATIONS, RESPONSES, make_model
from .test_latent_control_options import sharpen

ATTRIBUTES = {"language_style": ["plain", "lyrical"], "attitude": ["pessimistic", "optimistic"],
              "mental_characteristics": ["emotional", "critical"]}


def test_loss_is_zero_for_the_teachers_own_logits_and_ignores_unlabelled_positions():
    teacher = torch.randn(2, 5, 11, generator=torch.Generator().manual_seed(0))
    teacher[0, 1, 3] = torch.finfo(teacher.dtype).min  # a token ruled out by the plausibility constraint
    labels = torch.tensor([[-100, -100, 4, 5, 6], [-100, -100, -100, 2, 3]])
    assert distillation_loss(teacher, teacher, labels).abs() < 1e-6
    student = teacher.clone()
    student[:, :1] = 0.0  # position 0 predicts an unlabelled token (labels[:, 1] = -100)
    assert distillation_loss(student, teacher, labels).abs() < 1e-6
    student[1, 3] += torch.randn(11)  # a position that predicts a label
    loss = distillation_loss(student, teacher, labels)
    assert torch.isfinite(loss) and loss > 0


def test_random_personalities_cover_every_aspect_and_partial_rows_name_a_subset():
    rows = random_personalities(ATTRIBUTES, 400, random.Random(0), partial_share=0.5)
    for name, aspects in ATTRIBUTES.items():
        assert {row[name] for row in rows if name in row} == set(aspects)
    sizes = [len(row) for row in rows]
    assert min(sizes) >= 1 and 0.35 < sum(s < 3 for s in sizes) / len(sizes) < 0.65
    assert all(len(row) == 3 for row in random_personalities(ATTRIBUTES, 50, random.Random(1)))


def test_distillation_trains_the_student_towards_the_guided_teacher(processor, tmp_path):
    teacher = sharpen(make_model("llama", seed=3, latent_guidance_scale=2.0, latent_guidance_plausibility=0.1, sampler_start_scale=0.0), 4.0)
    student = make_model("llama", seed=3, latent_residual_layers=[0])
    student.load_state_dict(teacher.state_dict(), strict=False)
    student.latent_injection.to_residual["0"].weight.data.zero_()
    student.latent_injection.to_residual["0"].bias.data.zero_()
    student.requires_grad_(False)
    student.latent_injection.requires_grad_(True)  # as with LoRA: the backbones stay, the latent maps learn
    teacher_weights = {k: v.clone() for k, v in teacher.state_dict().items()}
    rows = [{"messages": c, "response": r, "attribute_id": 0, "aspect_id": 0}
            for c, r in zip(CONVERSATIONS, RESPONSES)]
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=30, per_device_train_batch_size=3,
                             learning_rate=1e-2, report_to=[], logging_steps=1, save_strategy="no", seed=0,
                             disable_tqdm=True)
    trainer = GuidanceDistillationTrainer(model=student, args=args, train_dataset=rows, teacher=teacher,
                                          data_collator=MiracleDataCollator(processor), interleave_attributes=False)
    batch = MiracleDataCollator(processor)(rows[:3])

    def mean_loss():  # over the same draws of personalities each time
        losses = []
        for seed in range(8):
            trainer._rng = random.Random(seed)
            with torch.no_grad():
                losses.append(float(trainer.compute_loss(student.eval(), batch)))
        return sum(losses) / len(losses)

    before = mean_loss()
    trainer.train()
    assert len([entry for entry in trainer.state.log_history if "loss" in entry]) == 30
    assert mean_loss() < 0.9 * before
    assert student.latent_injection.to_residual["0"].weight.abs().sum() > 0  # the new offsets learned
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in teacher_weights.items())  # teacher frozen


def test_a_teacher_without_guidance_is_refused(processor, tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=1, report_to=[])
    with pytest.raises(ValueError, match="guidance scale > 0"):
        GuidanceDistillationTrainer(model=make_model("gpt2"), args=args, train_dataset=[], teacher=make_model("gpt2"),
                                    data_collator=MiracleDataCollator(processor))
