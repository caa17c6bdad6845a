import pytest
from huggingface_hub.errors import StrictDataclassClassValidationError

from modeling_miracle import PAPER_ATTRIBUTES, MiracleConfig

from .conftest import make_config


def test_defaults_are_the_papers_attributes_and_sampler():
    config = MiracleConfig()
    assert config.attributes == PAPER_ATTRIBUTES
    assert (config.sampler_method, config.sampler_rtol, config.sampler_atol) == ("dopri5", 1e-3, 1e-3)
    assert (config.sampler_beta_min, config.sampler_beta_max) == (0.1, 20.0)
    assert config.kl_threshold == 0.9


def test_round_trip_keeps_attribute_order(tmp_path):
    config = make_config(attributes={"zeta": ["a", "b"], "alpha": ["x", "y", "z"]}, share_encoder=True)
    config.save_pretrained(tmp_path)
    loaded = MiracleConfig.from_pretrained(tmp_path)
    assert list(loaded.attributes) == ["zeta", "alpha"]
    assert loaded.attributes["alpha"] == ["x", "y", "z"]
    assert loaded.share_encoder is True
    assert type(loaded.decoder).__name__ == "GPT2Config"
    assert loaded.decoder.n_embd == 32


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"attributes": {"style": ["plain"]}}, "at least 2 aspects"),
        ({"attributes": {"style": ["plain", "plain"]}}, "more than once"),
        ({"attributes": {}}, "non-empty dict"),
        ({"pooling": "max"}, "one of ('mean', 'cls')"),
        ({"sampler_prior": "uniform"}, "one of ('context', 'standard')"),
        ({"sampler_method": "leapfrog"}, "dopri5"),
        ({"kl_zero_ratio": 0.7, "kl_ramp_ratio": 0.5}, "sum <= 1"),
        ({"sampler_beta_min": 5.0, "sampler_beta_max": 1.0}, "sampler_beta_max"),
        ({"add_latent_to_embeddings": False, "use_latent_prefix": False}, "never sees z"),
    ],
)
def test_bad_configs_name_what_is_valid(kwargs, message):
    with pytest.raises(StrictDataclassClassValidationError) as error:
        make_config(**kwargs)
    assert message in str(error.value)


def test_aspect_index_accepts_names_and_tags_and_rejects_unknowns():
    config = MiracleConfig()
    assert config.aspect_index("attitude", "optimistic") == 1
    assert config.aspect_index("attitude", 0) == 0
    with pytest.raises(ValueError, match="valid attributes"):
        config.aspect_index("humour", "dry")
    with pytest.raises(ValueError, match=r"valid aspects: \['pessimistic', 'optimistic'\]"):
        config.aspect_index("attitude", "cheerful")
    with pytest.raises(ValueError, match="valid aspects"):
        config.aspect_index("attitude", 2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"use_posterior": "false"}, r"`use_posterior` must be true or false \(a bool\); got 'false' \(str\)"),
        ({"sampler_keep_prior_term": "no"}, "`sampler_keep_prior_term` must be true or false"),
        ({"sampler_max_steps": 2.5}, r"`sampler_max_steps` must be an integer or None; got 2.5 \(float\)"),
        ({"latent_size": True}, r"`latent_size` must be an integer; got True \(bool\)"),
        ({"kl_weight": "1.0"}, "`kl_weight` must be a number"),
        ({"pooling": 1}, "`pooling` must be a string"),
        ({"sampler_rtol": 0.0, "sampler_atol": 0}, "cannot both be 0 with the adaptive method 'dopri5'"),
    ],
)
def test_wrongly_typed_fields_are_refused(kwargs, message):
    with pytest.raises(StrictDataclassClassValidationError) as error:
        make_config(**kwargs)
    assert error.match(message)


def test_numpy_and_tensor_numbers_become_python_numbers(tmp_path):
    import numpy as np
    import torch

    config = make_config(latent_size=np.int64(8), kl_weight=np.float32(0.5), sampler_step_size=torch.tensor(0.25),
                         sampler_method="rk4", sampler_rtol=0, sampler_atol=0)
    assert type(config.latent_size) is int and config.latent_size == 8
    assert type(config.kl_weight) is float and config.kl_weight == 0.5
    assert type(config.sampler_step_size) is float
    config.save_pretrained(tmp_path)  # JSON-serialisable
    assert MiracleConfig.from_pretrained(tmp_path).latent_size == 8
    assert config.aspect_index("attitude", np.int64(1)) == 1 and config.aspect_index("attitude", torch.tensor(0)) == 0


def test_fields_added_to_the_config_class_are_checked_too():
    from huggingface_hub.dataclasses import strict

    @strict
    class GuidedConfig(MiracleConfig):  # string annotations, as in configuration_miracle.py (postponed evaluation)
        guidance_scale: "float" = 1.0
        guidance_steps: "int | None" = None
        guidance_mode: "str" = None  # a loose annotation: its default is accepted as is

    assert GuidedConfig(guidance_scale=2).guidance_scale == 2
    with pytest.raises(StrictDataclassClassValidationError, match=r"`guidance_scale` must be a number; got 'high'"):
        GuidedConfig(guidance_scale="high")
    with pytest.raises(StrictDataclassClassValidationError, match="`guidance_steps` must be an integer or None"):
        GuidedConfig(guidance_steps=1.5)
    assert GuidedConfig().guidance_mode is None
    with pytest.raises(StrictDataclassClassValidationError, match="`guidance_mode` must be a string"):
        GuidedConfig(guidance_mode=3)


def test_a_gguf_marker_on_a_backbone_config_is_dropped(tmp_path):
    """A GGUF decoder is de-quantised on load: a saved MIRACLE model holds floats and must not reload as quantized."""
    import json

    config = make_config("llama")
    config.decoder.quantization_config = {"quant_method": "gguf"}
    config.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["decoder"]["quantization_config"]  # an old save
    loaded = MiracleConfig.from_pretrained(tmp_path)
    assert not hasattr(loaded.decoder, "quantization_config")
    assert "quantization_config" not in loaded.to_dict()["decoder"]
    other = make_config("llama")
    other.decoder.quantization_config = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    other.save_pretrained(tmp_path / "other")
    assert MiracleConfig.from_pretrained(tmp_path / "other").decoder.quantization_config["quant_method"] == "bitsandbytes"
