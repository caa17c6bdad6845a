"""Slow tests on the real offline default model (packaged backbones + shipped MIRACLE parts)."""

import pytest
import torch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default():
    from modeling_miracle import load_default_model

    return load_default_model()


def test_ebm_raises_every_requested_aspect_on_corpus_test_contexts(default):
    from modeling_miracle.commands.demo import all_personalities, test_contexts

    model, processor = default
    inputs = processor(test_contexts(8))
    rises = []
    for personality in all_personalities(model.config.attributes):
        sample = model.sample_latent(inputs["prior_input_ids"], inputs["prior_attention_mask"], personality,
                                     generator=torch.Generator().manual_seed(0))
        rises.append(sample.aspect_probability_after.mean(0) - sample.aspect_probability_before.mean(0))
    assert (torch.stack(rises) > 0).all()


def test_demo_prints_all_personalities(capsys):
    from modeling_miracle.commands.demo import run_demo

    results = run_demo(None, contexts=1, max_new_tokens=12)
    assert len(results) == 8
    assert all(r["generated_text"].strip() for r in results)
    assert "lyrical + optimistic + critical" in capsys.readouterr().out
