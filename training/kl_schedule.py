"""Cyclical KL annealing (Fu et al. 2019) with a real linear ramp: the value of beta at each training step."""

from __future__ import annotations

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


def kl_beta_at(state, config) -> float:
    """The KL weight the trainer passes to `forward` at the current optimisation step (`TrainerState`), from the
    model config's cycle settings; 1 once training has ended."""
    if state.max_steps <= 0 or state.global_step >= state.max_steps:
        return 1.0
    return cyclical_beta(state.global_step, state.max_steps, config.kl_num_cycles, config.kl_zero_ratio,
                         config.kl_ramp_ratio)


def unwrap_miracle(model):
    """The MIRACLE model inside a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model
