import pytest

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
    with pytest.raises(Exception, match=None) as error:
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
