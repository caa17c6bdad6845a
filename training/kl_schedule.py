"""Cyclical KL annealing (Fu et al. 2019) with a real linear ramp, and the callback that applies it."""

from __future__ import annotations

from transformers import TrainerCallback


def cyclical_beta(step: int, total_steps: int, num_cycles: int = 4, zero_ratio: float = 0.0, ramp_ratio: float = 0.5) -> float:
    """beta at `step`: each of `num_cycles` equal cycles holds 0 for `zero_ratio` of it, ramps linearly 0 -> 1
    over `ramp_ratio`, then holds 1."""
    if total_steps <= 0:
        return 1.0
    cycle_length = total_steps / num_cycles
    position = (step % cycle_length) / cycle_length  # in [0, 1)
    if position < zero_ratio:
        return 0.0
    if ramp_ratio > 0 and position < zero_ratio + ramp_ratio:
        return (position - zero_ratio) / ramp_ratio
    return 1.0


class KLScheduleCallback(TrainerCallback):
    """Sets `model.kl_beta` before every optimisation step from the config's KL cycle settings."""

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        miracle = unwrap_miracle(model)
        config = miracle.config
        miracle.kl_beta = cyclical_beta(
            state.global_step, state.max_steps, config.kl_num_cycles, config.kl_zero_ratio, config.kl_ramp_ratio
        )

    def on_train_end(self, args, state, control, model=None, **kwargs):
        unwrap_miracle(model).kl_beta = 1.0


def unwrap_miracle(model):
    """The MIRACLE model inside a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model
