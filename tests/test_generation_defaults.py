"""Decoding defaults shipped beside default-model parts (`generation_config.json`) reach `generate`."""

import json

import torch

from modeling_miracle.default_model import apply_generation_defaults

from .conftest import CONVERSATIONS, make_model
from .test_latent_control_options import PERSONALITY, sharpen


def test_generation_defaults_apply_and_keep_the_decoders_special_tokens(processor, tmp_path):
    model = sharpen(make_model("llama", seed=3))
    model.generation_config.eos_token_id = 50256
    inputs = processor(CONVERSATIONS)
    kwargs = dict(**inputs, personality=PERSONALITY, max_new_tokens=12, do_sample=False, pad_token_id=50256)
    before = model.generate(**kwargs, generator=torch.Generator().manual_seed(0))
    new = before[:, inputs["input_ids"].shape[1]:]
    assert any(len(set(row.tolist())) < len(row) for row in new)  # greedy repeats tokens without the default
    (tmp_path / "generation_config.json").write_text(json.dumps({"no_repeat_ngram_size": 1, "transformers_version": "5"}))
    apply_generation_defaults(model, tmp_path)
    assert model.generation_config.no_repeat_ngram_size == 1 and model.generation_config.eos_token_id == 50256
    after = model.generate(**kwargs, generator=torch.Generator().manual_seed(0))[:, inputs["input_ids"].shape[1]:]
    assert all(len(set(row.tolist())) == len(row) for row in after)


def test_no_file_changes_nothing(tmp_path):
    model = make_model("gpt2")
    before = model.generation_config.to_dict()
    apply_generation_defaults(model, tmp_path)
    assert model.generation_config.to_dict() == before
