import json

import pytest

from modeling_miracle.backbones import drop_saved_gguf_quantization, smollm2_folder


def fake_converted_copy(folder, quantization):
    folder.mkdir()
    for name in ("model.safetensors", "tokenizer_config.json"):
        (folder / name).write_text("{}")
    config = {"model_type": "llama", "hidden_size": 8}
    if quantization:
        config["quantization_config"] = quantization
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_a_copy_converted_by_an_earlier_version_loses_its_gguf_marker(tmp_path):
    folder = fake_converted_copy(tmp_path / "smollm2", {"quant_method": "gguf"})
    assert smollm2_folder(folder) == folder  # the cached copy is used, not converted again
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["hidden_size"] == 8
    assert drop_saved_gguf_quantization(folder) is False  # nothing left to do


def test_other_quantization_configs_are_kept(tmp_path):
    folder = fake_converted_copy(tmp_path / "other", {"quant_method": "bitsandbytes"})
    assert drop_saved_gguf_quantization(folder) is False
    assert json.loads((folder / "config.json").read_text())["quantization_config"] == {"quant_method": "bitsandbytes"}


@pytest.mark.slow
def test_converting_the_gguf_decoder_saves_plain_float_weights(tmp_path):
    from transformers import AutoModelForCausalLM

    folder = smollm2_folder(tmp_path / "smollm2")
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert getattr(model, "hf_quantizer", None) is None and next(model.parameters()).dtype.is_floating_point
