import typing

import numpy as np
import pytest
import torch

from modeling_miracle.configuration import MiracleConfig
from modeling_miracle.configuration.validation import (
    as_python_scalar,
    check_config_kwargs,
    check_value,
    declared_field_types,
    drop_gguf_quantization,
)


def test_declared_field_types_are_the_configs_own_fields_resolved():
    hints = declared_field_types(MiracleConfig)
    assert hints["latent_size"] is int and hints["sampler_max_steps"] == int | None
    assert "output_hidden_states" not in hints  # transformers' generic fields are not MIRACLE's options


@pytest.mark.parametrize(
    "value, hint, expected",
    [
        (np.int64(3), int, 3),
        (torch.tensor(3), int, 3),
        (np.float32(0.5), float, 0.5),
        (2, float, 2),
        (np.bool_(True), bool, True),
        (None, int | None, None),
        ([1, np.int64(2)], int | list[int] | None, [1, 2]),
        ("rk4", typing.Literal["rk4", "euler"], "rk4"),
    ],
)
def test_values_of_the_right_type_pass_as_python_values(value, hint, expected):
    checked = check_value("x", value, hint)
    assert checked == expected and type(checked) is type(expected)


@pytest.mark.parametrize(
    "value, hint, message",
    [
        ("false", bool, r"`x` must be true or false \(a bool\); got 'false' \(str\)"),
        (1, bool, "must be true or false"),
        (2.5, int | None, r"`x` must be an integer or None; got 2.5 \(float\)"),
        (True, float, "must be a number"),
        (torch.tensor([1, 2]), int, "must be an integer"),
        ([1, "2"], list[int], r"must be a list of \(an integer\)"),
        ("leapfrog", typing.Literal["rk4", "euler"], r"must be one of \['rk4', 'euler'\]"),
    ],
)
def test_values_of_the_wrong_type_name_what_is_accepted(value, hint, message):
    with pytest.raises(ValueError, match=message):
        check_value("x", value, hint)


def test_as_python_scalar_leaves_other_values_alone():
    tensor = torch.ones(2)
    assert as_python_scalar(tensor) is tensor and as_python_scalar("a") == "a"
    assert as_python_scalar(np.array(4)) == 4


def test_config_kwargs_unknown_keys_suggest_the_closest_field():
    assert check_config_kwargs(MiracleConfig, {"latent_size": np.int64(8), "output_hidden_states": True}) == {
        "latent_size": 8, "output_hidden_states": True}
    with pytest.raises(ValueError, match=r"Unknown MiracleConfig option 'latnet_size'\. Did you mean 'latent_size'\? "
                                         r"Valid options: \[.*'kl_weight'.*\]"):
        check_config_kwargs(MiracleConfig, {"latnet_size": 8})
    with pytest.raises(ValueError, match="`encoder` cannot be set here; use --encoder"):
        check_config_kwargs(MiracleConfig, {"encoder": {}}, reserved={"encoder": "use --encoder"})
    with pytest.raises(ValueError, match="`share_encoder` must be true or false"):
        check_config_kwargs(MiracleConfig, {"share_encoder": "yes"})


def test_only_a_gguf_quantization_config_is_dropped():
    from transformers import LlamaConfig

    gguf, other = LlamaConfig(), LlamaConfig()
    gguf.quantization_config = {"quant_method": "gguf"}
    other.quantization_config = {"quant_method": "bitsandbytes"}
    drop_gguf_quantization(gguf)
    drop_gguf_quantization(other)
    drop_gguf_quantization(None)
    assert not hasattr(gguf, "quantization_config") and other.quantization_config == {"quant_method": "bitsandbytes"}
