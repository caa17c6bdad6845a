import pytest

from modeling_miracle.training.kl_schedule import cyclical_beta


@pytest.mark.parametrize(
    "step, expected",
    [(0, 0.0), (10, 0.4), (25, 1.0), (40, 1.0), (49, 1.0), (50, 0.0), (55, 0.2), (70, 0.8), (75, 1.0), (99, 1.0)],
)
def test_pure_ramp_cycles(step, expected):
    # 100 steps, 2 cycles of 50: ramp 0 -> 1 over the first 25 steps of each, then hold 1.
    assert cyclical_beta(step, 100, num_cycles=2, zero_ratio=0.0, ramp_ratio=0.5) == pytest.approx(expected)


@pytest.mark.parametrize("step, expected", [(0, 0.0), (9, 0.0), (10, 0.0), (15, 0.5), (19, 0.9), (20, 1.0), (39, 1.0), (40, 0.0)])
def test_zero_phase_then_ramp(step, expected):
    # 80 steps, 2 cycles of 40: zero for 10 steps, ramp over 10 steps, hold 20.
    assert cyclical_beta(step, 80, num_cycles=2, zero_ratio=0.25, ramp_ratio=0.25) == pytest.approx(expected)


def test_ramp_is_linear_not_a_jump():
    values = [cyclical_beta(s, 1000, num_cycles=1, zero_ratio=0.0, ramp_ratio=0.5) for s in range(0, 500, 50)]
    assert values == pytest.approx([s / 500 for s in range(0, 500, 50)])
    assert len(set(values)) == len(values)
