import math

import pytest
import torch

from modeling_miracle.configuration.personality import Personality
from modeling_miracle.sampling import SamplerSettings

from .conftest import CONVERSATIONS, OPPOSITE, PERSONALITY, make_model

@pytest.fixture(scope="module")
def inputs(request):
    from transformers import BertTokenizerFast

    from modeling_miracle import MiracleProcessor
    from modeling_miracle.backbones import load_gpt2_tokenizer, minilm_folder

    processor = MiracleProcessor(BertTokenizerFast.from_pretrained(minilm_folder()), load_gpt2_tokenizer())
    return processor(CONVERSATIONS)


def sample(model, inputs, seed=0, **kwargs):
    return model.sample_latent(inputs["prior_input_ids"], inputs["prior_attention_mask"],
                               generator=torch.Generator().manual_seed(seed), **kwargs)


def test_sampling_raises_every_named_aspects_probability(separated_model, inputs):
    result = sample(separated_model, inputs, personality=PERSONALITY)
    before, after = result.aspect_probability_before, result.aspect_probability_after
    assert (after.mean(0) > before.mean(0)).all()
    assert (after >= before - 1e-4).all()
    assert after.mean() > 0.9
    assert result.function_evaluations > 0
    rows = result.diagnostics(separated_model.config.attributes)
    assert rows[0]["attitude"]["aspect"] == "optimistic"
    assert rows[0]["attitude"]["after"] > rows[0]["attitude"]["before"]
    # aspect_probabilities agrees with the diagnostics
    probabilities = separated_model.aspect_probabilities(result.latent)
    assert torch.allclose(probabilities["attitude"][:, 1], after[:, 1])
    assert set(probabilities) == set(separated_model.config.attributes)


def test_zero_weight_leaves_an_attribute_untouched(separated_model, inputs):
    named_only = sample(separated_model, inputs, personality={"attitude": "optimistic"})
    zero_weight = sample(separated_model, inputs, personality={"attitude": "optimistic", "language_style": "lyrical"},
                         attribute_weights={"language_style": 0.0})
    assert torch.allclose(named_only.latent, zero_weight.latent)
    assert math.isnan(named_only.aspect_probability_after[0, 0])
    nothing = sample(separated_model, inputs, personality={"attitude": "optimistic"}, attribute_weights={"attitude": 0})
    assert torch.equal(nothing.latent, nothing.start_latent)


def test_opposite_personalities_in_one_batch_move_apart(separated_model, inputs):
    twin = {k: v[:1].repeat(2, 1) for k, v in inputs.items()}
    result = sample(separated_model, twin, personality=[PERSONALITY, OPPOSITE])
    before = (result.start_latent[0] - result.start_latent[1]).norm()
    after = (result.latent[0] - result.latent[1]).norm()
    assert after > before
    # Row 0 asks for aspect 1 (positive dims 0-2), row 1 for aspect 0 (negative): their gap grows on each.
    gap_before = result.start_latent[0, :3] - result.start_latent[1, :3]
    gap_after = result.latent[0, :3] - result.latent[1, :3]
    assert (gap_after > gap_before).all()
    assert (result.aspect_probability_after.mean(0) > result.aspect_probability_before.mean(0)).all()


def test_negative_weight_lowers_the_aspects_probability(separated_model, inputs):
    result = sample(separated_model, inputs, personality={"attitude": "optimistic"}, attribute_weights={"attitude": -1.0})
    before, after = result.aspect_probability_before[:, 1], result.aspect_probability_after[:, 1]
    # Steering away stops pushing once the aspect is unlikely: rows that start there stay, the others drop.
    assert (after <= before + 1e-6).all()
    assert (before > 0.01).any() and (after[before > 0.01] < 0.1 * before[before > 0.01]).all()


def test_a_negative_weight_is_the_probability_of_not_the_aspect():
    """-w on one of two aspects is +w on the other (log(1 - p) = log p(other)); it saturates instead of growing
    without end as z moves away (the shipped model's z ran to norm 28 with `-1 * log p`)."""
    from modeling_miracle.sampling import Personality, log_probability_of_personality

    heads = lambda z: {"a": torch.stack([z[:, 0], -z[:, 0]], -1), "b": torch.stack([z[:, 1], z[:, 2], -z[:, 1]], -1)}
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    away = log_probability_of_personality(heads, z, Personality(torch.tensor([[0, -1]] * 5), torch.tensor([[-2.0, 0.0]] * 5)))
    towards_other = log_probability_of_personality(heads, z, Personality(torch.tensor([[1, -1]] * 5), torch.tensor([[2.0, 0.0]] * 5)))
    assert torch.allclose(away, towards_other, atol=1e-6)
    far = torch.tensor([[-50.0, 0.0, 0.0]])  # aspect 0 of "a" is very unlikely here: nothing left to push
    far.requires_grad_(True)
    energy = log_probability_of_personality(heads, far, Personality(torch.tensor([[0, 2]]), torch.tensor([[-1.0, -1.0]])))
    (gradient,) = torch.autograd.grad(energy.sum(), far)
    assert gradient[0, 0].abs() < 1e-6


@pytest.mark.parametrize("weight", [-1e6, -1.0, 1.0, 1e6])
@pytest.mark.parametrize("method,step", [("dopri5", None), ("euler", 0.5), ("rk4", 0.1)])
def test_the_ode_stays_within_its_trust_radius_for_any_weight_and_solver(separated_model, inputs, weight, method, step):
    from modeling_miracle.sampling import trust_radius

    options = {"sampler_method": method, "sampler_max_distance": 0.25}
    if step is not None:
        options["sampler_step_size"] = step
    result = sample(separated_model, inputs, personality={"attitude": "optimistic", "language_style": "lyrical"},
                    attribute_weights={"attitude": weight, "language_style": weight}, **options)
    radius = trust_radius(SamplerSettings.from_config(separated_model.config, **options), result.prior_logvar)
    moved = (result.latent - result.start_latent).norm(dim=-1)
    assert torch.isfinite(result.latent).all()
    assert (moved <= radius * (1 + 1e-5)).all() and (moved > 0).any()
    if method == "euler" and abs(weight) > 1:  # without the bound, such weights leave the region at once
        unbounded = sample(separated_model, inputs, personality={"attitude": "optimistic", "language_style": "lyrical"},
                           attribute_weights={"attitude": weight, "language_style": weight},
                           **{**options, "sampler_max_distance": None})
        assert ((unbounded.latent - unbounded.start_latent).norm(dim=-1) > 10 * radius).any()


def test_the_trust_radius_caps_the_speed_and_keeps_the_direction():
    from modeling_miracle.sampling import PersonalityODE

    ode = PersonalityODE(None, None, None, radius=torch.tensor([2.0, 2.0]))
    velocity = torch.tensor([[30.0, 40.0], [0.3, 0.4]])
    assert torch.allclose(ode.bounded(velocity), torch.tensor([[1.2, 1.6], [0.3, 0.4]]))
    assert torch.equal(PersonalityODE(None, None, None).bounded(velocity), velocity)


def test_use_ebm_false_is_the_prior_sample(separated_model, inputs):
    result = sample(separated_model, inputs, personality=PERSONALITY, use_ebm=False)
    assert torch.equal(result.latent, result.start_latent)
    assert result.function_evaluations == 0


def test_sampler_options(separated_model, inputs):
    fixed = sample(separated_model, inputs, personality=PERSONALITY, sampler_method="rk4", sampler_step_size=0.25)
    assert fixed.function_evaluations == 16  # 4 steps x 4 stages
    with_prior = sample(separated_model, inputs, personality=PERSONALITY, sampler_keep_prior_term=True)
    assert not torch.allclose(with_prior.latent, fixed.latent)
    standard = sample(separated_model, inputs, personality=PERSONALITY, sampler_prior="standard", use_ebm=False)
    reference = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(standard.latent, reference)
    with pytest.raises(RuntimeError, match="sampler_max_steps"):
        sample(separated_model, inputs, personality=PERSONALITY, sampler_max_steps=1, sampler_rtol=1e-9, sampler_atol=1e-9)
    with pytest.raises(ValueError, match="valid options"):
        sample(separated_model, inputs, personality=PERSONALITY, sampler_temperature=2.0)
    with pytest.raises(Exception, match="sampler_method"):
        sample(separated_model, inputs, personality=PERSONALITY, sampler_method="leapfrog")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"personality": {"humour": "dry"}}, "valid attributes"),
        ({"personality": {"attitude": "cheerful"}}, r"valid aspects: \['pessimistic', 'optimistic'\]"),
        ({"personality": [PERSONALITY, OPPOSITE]}, "2 entries for a batch of 3"),
        ({"personality": PERSONALITY, "attribute_weights": {"attitude": float("nan")}}, "finite"),
        ({"personality": PERSONALITY, "attribute_weights": {"attitude": float("inf")}}, "finite"),
        ({"personality": {"attitude": 1}, "attribute_weights": {"language_style": 2.0}}, "does not name"),
        ({"personality": "lyrical"}, "dict attribute"),
    ],
)
def test_bad_personalities_are_clear_errors(separated_model, inputs, kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample(separated_model, inputs, **kwargs)


def test_non_finite_values_are_errors(separated_model, inputs):
    with pytest.raises(ValueError, match="NaN or infinite"):
        separated_model.generate(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                 latent=torch.full((3, 16), float("nan")), max_new_tokens=2)
    broken = make_model("gpt2")
    with torch.no_grad():
        broken.attribute_heads.heads["attitude"][0].weight.fill_(float("inf"))
    with pytest.raises(FloatingPointError, match="non-finite"):
        sample(broken, inputs, personality={"attitude": "optimistic"})


def test_generate_samples_then_decodes(separated_model, inputs):
    torch.manual_seed(0)
    out = separated_model.generate(**inputs, personality=PERSONALITY, max_new_tokens=6, pad_token_id=50256)
    # The same as sampling the personality's latent first (same random draws) and decoding from it.
    torch.manual_seed(0)
    sampled = separated_model.sample_latent(inputs["prior_input_ids"], inputs["prior_attention_mask"], personality=PERSONALITY)
    decoded = separated_model.generate(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                       latent=sampled.latent, max_new_tokens=6, pad_token_id=50256)
    assert out.shape == (3, inputs["input_ids"].shape[1] + 6) and torch.equal(out, decoded)
    torch.manual_seed(0)
    latent = sample(separated_model, inputs, personality=PERSONALITY, seed=0).latent
    with pytest.raises(ValueError, match="prior_input_ids"):
        separated_model.generate(input_ids=inputs["input_ids"], max_new_tokens=2)
    with pytest.raises(ValueError, match="shape"):
        separated_model.generate(input_ids=inputs["input_ids"], latent=latent[:2], max_new_tokens=2)


@pytest.mark.parametrize("strategy", [dict(num_beams=3, num_return_sequences=2), dict(num_return_sequences=2, do_sample=True, top_k=1)])
def test_beams_and_return_sequences_keep_each_rows_latent(separated_model, inputs, strategy):
    latent = torch.randn(3, 16, generator=torch.Generator().manual_seed(5)) * 3
    common = dict(max_new_tokens=8, pad_token_id=50256, **strategy)
    batch = separated_model.generate(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                     latent=latent, **common)
    prompt = inputs["input_ids"].shape[1]
    for row in range(3):
        real = inputs["attention_mask"][row].bool()
        alone = separated_model.generate(input_ids=inputs["input_ids"][row:row + 1, real], latent=latent[row:row + 1], **common)
        assert torch.equal(batch[2 * row:2 * row + 2, prompt:], alone[:, real.sum():])
    different = {tuple(batch[2 * row, prompt:].tolist()) for row in range(3)}
    assert len(different) > 1


def test_settings_come_from_the_config_with_overrides(separated_model):
    settings = SamplerSettings.from_config(separated_model.config, sampler_rtol=1e-5)
    assert (settings.method, settings.rtol, settings.atol, settings.beta_max) == ("dopri5", 1e-5, 1e-3, 20.0)
    personality = Personality.resolve(separated_model.config, [PERSONALITY, {"attitude": 0}], None, 2)
    assert personality.aspects.tolist() == [[1, 1, 1], [-1, 0, -1]]
    assert personality.weights.tolist() == [[1, 1, 1], [0, 1, 0]]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"sampler_keep_prior_term": "no"}, r"`sampler_keep_prior_term` must be true or false \(a bool\); got 'no'"),
        ({"sampler_max_steps": 2.5}, r"`sampler_max_steps` must be an integer or None; got 2.5"),
        ({"sampler_rtol": "1e-3"}, r"`sampler_rtol` must be a number; got '1e-3'"),
        ({"sampler_rtol": 0, "sampler_atol": 0}, "cannot both be 0 with the adaptive method 'dopri5'"),
    ],
)
def test_wrongly_typed_or_impossible_sampler_options_are_refused(separated_model, inputs, overrides, message):
    with pytest.raises(ValueError, match=message):
        sample(separated_model, inputs, personality=PERSONALITY, **overrides)


def test_use_ebm_must_be_a_bool(separated_model, inputs):
    with pytest.raises(ValueError, match=r"`use_ebm` must be true or false \(a bool\); got 'false'"):
        sample(separated_model, inputs, personality=PERSONALITY, use_ebm="false")
    with pytest.raises(ValueError, match="`use_ebm` must be true or false"):
        separated_model.generate(**inputs, personality=PERSONALITY, use_ebm="false", max_new_tokens=2)


def test_numpy_and_tensor_scalars_work_as_numbers(separated_model, inputs):
    import numpy as np

    expected = sample(separated_model, inputs, personality={"attitude": 1, "language_style": 0},
                      attribute_weights={"attitude": 2.5}, sampler_method="rk4", sampler_step_size=0.25).latent
    for aspect, weight, step in ((np.int64(1), np.float32(2.5), np.float64(0.25)),
                                 (torch.tensor(1), torch.tensor(2.5), torch.tensor(0.25))):
        got = sample(separated_model, inputs, personality={"attitude": aspect, "language_style": np.int32(0)},
                     attribute_weights={"attitude": weight}, sampler_method="rk4", sampler_step_size=step).latent
        assert torch.equal(got, expected)


def test_huge_weights_and_zero_tolerances_get_errors_that_name_the_cause(separated_model, inputs):
    with pytest.raises(ValueError, match=r"Weight of attribute 'attitude' must be a finite number with \|weight\| <= 3.4e\+38"):
        sample(separated_model, inputs, personality=PERSONALITY, attribute_weights={"attitude": 1e308})
    # Zero tolerances are fine for fixed-step methods, which do not use them.
    fixed = sample(separated_model, inputs, personality=PERSONALITY, sampler_method="rk4", sampler_step_size=0.5,
                   sampler_rtol=0, sampler_atol=0)
    assert fixed.function_evaluations == 8


def test_the_ode_runs_in_float32_for_a_bfloat16_model_and_under_autocast(separated_model, inputs):
    """Half-precision models (e.g. loaded with `dtype=torch.bfloat16` for a GPU) sample with float32 ODE solves."""
    import copy

    from modeling_miracle.sampling import solve_personality_ode

    half = copy.deepcopy(separated_model).to(torch.bfloat16)
    result = sample(half, inputs, personality=PERSONALITY)
    assert result.latent.dtype == torch.bfloat16 and result.aspect_probability_after.mean() > 0.9
    # The same solve as the float32 heads (rounded to bfloat16) from the same start, in the same number of steps.
    target = Personality.resolve(half.config, PERSONALITY, None, result.start_latent.shape[0])
    settings = SamplerSettings.from_config(half.config)
    exact, evaluations = solve_personality_ode(copy.deepcopy(half.attribute_heads).float(), result.start_latent.float(),
                                               target, settings)
    assert evaluations == result.function_evaluations
    assert torch.allclose(result.latent.float(), exact, atol=0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        start = result.start_latent.float()
        latent, autocast_evaluations = solve_personality_ode(separated_model.attribute_heads, start, target, settings)
    reference, reference_evaluations = solve_personality_ode(separated_model.attribute_heads, start, target, settings)
    assert latent.dtype == torch.float32 and torch.equal(latent, reference)
    assert autocast_evaluations == reference_evaluations
