"""The bounded personality ODE on the shipped default model: every weight the README shows (negative ones too) and
every documented sampler setting give fluent replies, with z where the decoder was trained (slow: real backbones)."""

import pytest
import torch

CONTEXTS = ["What do you do on weekends?", "How was your day at work?", "Do you like to travel?",
            "What are you cooking tonight?"]
# Latent norms of the shipped model's training region, measured on 96 validation examples of the corpus
# (posterior samples z ~ q(z|C,R): norms up to 4.8; at most 3.2 from the prior mean). The old unbounded ODE took
# z to norm 28 with a weight of -1 and 137 for the guidance latent of a weight of 5.
MAX_TRAINED_NORM = 6.0
SETTINGS = [({"attitude": w}, {}) for w in (-1.0, -0.5, 0.5, 1.0, 2.0, 5.0)] + [
    (None, {"sampler_method": "rk4", "sampler_step_size": 0.1}),
    (None, {"sampler_method": "euler", "sampler_step_size": 0.1}),
]


def repeated_trigram(text: str) -> str | None:
    words = text.lower().split()
    seen = set()
    for trigram in zip(words, words[1:], words[2:]):
        if trigram in seen:
            return " ".join(trigram)
        seen.add(trigram)
    return None


@pytest.fixture(scope="module")
def shipped():
    from modeling_miracle import load_model_and_processor

    torch.set_num_threads(max(1, torch.get_num_threads()))
    return load_model_and_processor()


@pytest.mark.slow
@pytest.mark.parametrize("weights,sampler", SETTINGS, ids=[f"{w}-{s.get('sampler_method', 'dopri5')}" for w, s in SETTINGS])
def test_shipped_model_replies_stay_fluent_for_every_weight_and_sampler(shipped, weights, sampler):
    model, processor = shipped
    personality = {"attitude": "optimistic"}
    inputs = processor([[{"role": "user", "content": c}] for c in CONTEXTS])
    sample = model.sample_latent(inputs["prior_input_ids"], inputs["prior_attention_mask"], personality=personality,
                                 attribute_weights=weights, **sampler)
    opposite = model.opposite_latent(inputs["prior_input_ids"], inputs["prior_attention_mask"], sample, weights, **sampler)
    assert sample.latent.norm(dim=-1).max() < MAX_TRAINED_NORM
    assert opposite.norm(dim=-1).max() < MAX_TRAINED_NORM  # the guidance contrast, weights negated
    output = model.generate(**inputs, personality=personality, attribute_weights=weights, max_new_tokens=25,
                            do_sample=False, **sampler)
    replies = processor.batch_decode(output, prompt_length=inputs["input_ids"].shape[1])
    for reply in replies:
        print(weights, sampler, repr(reply))
        assert len(reply.split()) >= 5, reply
        assert repeated_trigram(reply) is None, f"degenerate reply {reply!r} ({repeated_trigram(reply)!r} repeats)"
    if weights and weights["attitude"] < 0:  # steering away lowers the aspect's latent probability
        assert (sample.aspect_probability_after.nanmean(1) < sample.aspect_probability_before.nanmean(1)).all()
