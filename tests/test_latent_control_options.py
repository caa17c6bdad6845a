"""The options that strengthen how z controls the text: several latent prefix positions, the bag-of-words loss,
word dropout and decoding-time latent guidance. Each one switched off must give today's behaviour exactly."""

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError

from modeling_miracle import MiracleForPersonalizedGeneration

from .conftest import CONVERSATIONS, RESPONSES, make_model

PERSONALITY = {"language_style": "lyrical", "attitude": "optimistic"}


def training_batch(processor):
    batch = processor(CONVERSATIONS, responses=RESPONSES)
    batch["attribute_ids"] = torch.tensor([0, 1, 2])
    batch["aspect_ids"] = torch.tensor([1, 0, 1])
    return batch


def sharpen(model, factor=20.0):
    """Larger decoder weights than the default init, so greedy decoding is not a constant token."""
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(factor)
        for p in model.latent_injection.parameters():
            p.normal_(0, 1.0)
        for p in model.attribute_heads.parameters():  # heads that the ODE can climb
            p.mul_(10.0)
    return model


# ---------------------------------------------------------------- latent prefix positions
@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_several_prefix_positions_fill_the_cache_and_keep_cached_decoding_exact(kind, processor):
    model = sharpen(make_model(kind, seed=1, latent_prefix_length=3))
    inputs = processor(CONVERSATIONS)
    latent = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    cache = model.latent_injection.prefix_cache(latent, torch.float32)
    assert cache.get_seq_length() == 3
    kwargs = dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], latent=latent,
                  max_new_tokens=10, do_sample=False, pad_token_id=50256)
    assert torch.equal(model.generate(**kwargs, use_cache=True), model.generate(**kwargs, use_cache=False))


def test_prefix_positions_round_trip_and_change_the_logits(processor, tmp_path):
    model = sharpen(make_model("llama", latent_prefix_length=4, add_latent_to_embeddings=False))
    inputs = processor(CONVERSATIONS)
    latent = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    logits = model(**inputs, latent=latent).logits
    model.save_pretrained(tmp_path)
    reloaded = MiracleForPersonalizedGeneration.from_pretrained(tmp_path).eval()
    assert reloaded.config.latent_prefix_length == 4
    assert torch.equal(reloaded(**inputs, latent=latent).logits, logits)
    # The extra positions are used: zeroing the 2nd-4th slots of the prefix map changes the logits.
    kv = model.latent_injection.to_prefix.weight.view(2, 2, 2, 4, 8, 16)  # layers, k/v, kv_heads, positions, dim, latent
    with torch.no_grad():
        kv[:, :, :, 1:] = 0
    assert not torch.allclose(model(**inputs, latent=latent).logits, logits)


def test_one_prefix_position_keeps_the_original_parameter_layout():
    model = make_model("llama")
    layers, kv_heads, head_dim = 2, 2, 8
    assert model.latent_injection.to_prefix.out_features == layers * 2 * kv_heads * head_dim
    assert model.latent_injection.prefix_length == 1


# ---------------------------------------------------------------- bag-of-words loss
def test_bag_of_words_loss_adds_its_weighted_term_and_trains_the_latent(processor):
    batch = training_batch(processor)
    plain = make_model("gpt2", seed=0)
    with_bow = make_model("gpt2", seed=0, bow_loss_weight=0.5)
    assert plain.bow_head is None and plain(**batch).bow_loss is None
    missing, unexpected = with_bow.load_state_dict(plain.state_dict(), strict=False)
    assert set(missing) == {"bow_head.weight", "bow_head.bias"} and not unexpected
    out_plain, out = plain(**batch), with_bow(**batch)
    assert torch.isfinite(out.bow_loss) and out.bow_loss > 0
    assert torch.allclose(out.loss, out_plain.loss + 0.5 * out.bow_loss, atol=1e-5)
    # Uniform BOW logits give exactly log(vocab) per token.
    with torch.no_grad():
        with_bow.bow_head.weight.zero_()
        with_bow.bow_head.bias.zero_()
    assert torch.allclose(with_bow(**batch).bow_loss, torch.log(torch.tensor(50257.0)), atol=1e-4)
    with torch.no_grad():
        with_bow.bow_head.weight.normal_(0, 0.02)
    with_bow.train()
    with_bow(**batch, kl_beta=0.0).bow_loss.backward()
    assert with_bow.bow_head.weight.grad.abs().sum() > 0
    assert with_bow.posterior_head.proj.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- word dropout
def test_word_dropout_zeroes_only_response_inputs_and_only_in_training(processor):
    batch = training_batch(processor)
    model = make_model("llama", word_dropout=0.5, add_latent_to_embeddings=False)
    seen = []
    model.decoder.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["inputs_embeds"]),
                                            with_kwargs=True)
    model(**batch)
    reference = model.decoder.get_input_embeddings()(batch["input_ids"])
    assert torch.equal(seen[-1], reference[:, -seen[-1].shape[1]:])  # eval: untouched
    model.train()
    torch.manual_seed(0)
    model(**batch)
    embeds = seen[-1]
    full = reference[:, -embeds.shape[1]:]
    labels = batch["labels"][:, -embeds.shape[1]:]
    zeroed = (embeds == 0).all(-1) & ~(full == 0).all(-1)
    assert zeroed.any()
    assert not (zeroed & (labels == -100)).any()
    assert torch.equal(embeds[~zeroed], full[~zeroed])


def test_word_dropout_off_gives_the_same_training_loss(processor):
    batch = training_batch(processor)
    losses = []
    for overrides in ({}, {"word_dropout": 0.0}):
        model = make_model("gpt2", seed=0, **overrides).train()
        losses.append(model(**batch, kl_beta=0.0).loss)
    assert torch.equal(*losses)


# ---------------------------------------------------------------- latent guidance
def test_guided_logits_contrast_the_two_latents(processor):
    # float64: the guided pass runs both latents as one batch of 6, the plain ones as batches of 3, and float32
    # kernels that differ with the batch shape and the thread count leave ~1e-5 relative differences on these
    # sharpened logits (up to ~900), which the guidance formula multiplies by 5.
    model = sharpen(make_model("llama", seed=2)).double()
    inputs = processor(CONVERSATIONS)
    z, z_opposite = torch.randn(2, 3, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    plain = model(**inputs, latent=z).logits
    opposite = model(**inputs, latent=z_opposite).logits
    guided = model(**inputs, latent=z, guidance_latent=z_opposite, latent_guidance_scale=2.0).logits
    assert plain.dtype == torch.float64 and plain.abs().max() > 100
    assert torch.allclose(guided, plain + 2.0 * (plain - opposite), rtol=1e-9, atol=1e-8)
    off = model(**inputs, latent=z, guidance_latent=z_opposite, latent_guidance_scale=0.0).logits
    assert torch.equal(off, plain)


def test_guidance_plausibility_keeps_only_tokens_the_decoder_finds_likely(processor):
    model = sharpen(make_model("llama", seed=2))
    inputs = processor(CONVERSATIONS)
    z, z_opposite = torch.randn(2, 3, 16, generator=torch.Generator().manual_seed(0))
    plain = model(**inputs, latent=z).logits[:, -1]
    unconstrained = model(**inputs, latent=z, guidance_latent=z_opposite, latent_guidance_scale=2.0).logits[:, -1]
    model.config.latent_guidance_plausibility = 0.1
    constrained = model(**inputs, latent=z, guidance_latent=z_opposite, latent_guidance_scale=2.0).logits[:, -1]
    probs = plain.softmax(-1)
    allowed = probs >= 0.1 * probs.max(-1, keepdim=True).values
    assert allowed.any(-1).all() and not allowed.all()
    assert torch.allclose(constrained[allowed], unconstrained[allowed], atol=1e-4)
    assert (constrained[~allowed] == torch.finfo(constrained.dtype).min).all()
    with pytest.raises(StrictDataclassClassValidationError, match="latent_guidance_plausibility"):
        make_model("llama", latent_guidance_plausibility=1.0)


def test_guidance_plausibility_per_call_matches_the_config_and_is_checked(processor):
    model = sharpen(make_model("llama", seed=3))
    kwargs = dict(**processor(CONVERSATIONS), personality=PERSONALITY, max_new_tokens=8, do_sample=False,
                  latent_guidance_scale=6.0, pad_token_id=0)
    per_call = model.generate(**kwargs, latent_guidance_plausibility=0.5, generator=torch.Generator().manual_seed(0))
    unconstrained = model.generate(**kwargs, generator=torch.Generator().manual_seed(0))
    model.config.latent_guidance_plausibility = 0.5
    from_config = model.generate(**kwargs, generator=torch.Generator().manual_seed(0))
    assert torch.equal(per_call, from_config)
    assert not torch.equal(per_call, unconstrained)
    with pytest.raises(ValueError, match="latent_guidance_plausibility"):
        model.generate(**kwargs, latent_guidance_plausibility=1.5)


def test_guided_generation_is_exact_with_the_cache_and_off_by_default(processor):
    model = sharpen(make_model("llama", seed=3, latent_prefix_length=2))
    inputs = processor(CONVERSATIONS)
    kwargs = dict(**inputs, personality=PERSONALITY, max_new_tokens=10, do_sample=False, pad_token_id=50256)
    baseline = model.generate(**kwargs, generator=torch.Generator().manual_seed(0))
    zero = model.generate(**kwargs, latent_guidance_scale=0.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(baseline, zero)
    cached = model.generate(**kwargs, latent_guidance_scale=3.0, generator=torch.Generator().manual_seed(0))
    full = model.generate(**kwargs, latent_guidance_scale=3.0, use_cache=False, generator=torch.Generator().manual_seed(0))
    assert torch.equal(cached, full)
    assert not torch.equal(cached, baseline)


def test_guidance_moves_the_opposite_latent_away_from_the_personality(processor):
    model = make_model("gpt2", seed=4)
    inputs = processor(CONVERSATIONS)
    sample = model.sample_latent(inputs["prior_input_ids"], inputs["prior_attention_mask"], PERSONALITY,
                                 generator=torch.Generator().manual_seed(0))
    opposite = sample.personality.opposite()
    assert torch.equal(opposite.aspects, sample.aspects)
    assert opposite.weights[:, :2].tolist() == [[-1.0, -1.0]] * 3 and not opposite.weights[:, 2].any()
    away = model.sample_latent(inputs["prior_input_ids"], inputs["prior_attention_mask"], opposite,
                               start_latent=sample.start_latent)
    assert torch.equal(away.start_latent, sample.start_latent)
    assert (away.aspect_probability_after[:, :2] < sample.aspect_probability_after[:, :2]).all()
    # `opposite_latent` is that latent, from the sample's own prior (the context is not encoded again)
    assert torch.equal(model.opposite_latent(sample), away.latent)


def test_guidance_refuses_beam_search_and_the_config_default_applies(processor, tmp_path):
    model = make_model("gpt2", seed=5, latent_guidance_scale=1.5)
    inputs = processor(CONVERSATIONS)
    with pytest.raises(ValueError, match="not beam search.*drop `latent_guidance_scale`"):
        model.generate(**inputs, personality=PERSONALITY, num_beams=2, max_new_tokens=3, pad_token_id=50256,
                       latent_guidance_scale=1.5)
    model.save_pretrained(tmp_path)
    assert MiracleForPersonalizedGeneration.from_pretrained(tmp_path).config.latent_guidance_scale == 1.5
    kwargs = dict(**inputs, max_new_tokens=4, do_sample=False, pad_token_id=50256)
    guided = model.generate(**kwargs, personality=PERSONALITY, generator=torch.Generator().manual_seed(0))
    assert torch.equal(guided, model.generate(**kwargs, personality=PERSONALITY, latent_guidance_scale=1.5,
                                              generator=torch.Generator().manual_seed(0)))


def test_beam_search_falls_back_from_the_config_default_to_unguided_decoding(processor, caplog):
    """A config with a guidance default (like the shipped model's) still decodes with beams: unguided, said once."""
    from transformers.utils import logging as hf_logging

    model = sharpen(make_model("gpt2", seed=5, latent_guidance_scale=1.5))
    inputs = processor(CONVERSATIONS)
    kwargs = dict(**inputs, personality=PERSONALITY, num_beams=2, max_new_tokens=4, pad_token_id=50256)
    seeded = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    hf_logging.enable_propagation()
    try:
        with caplog.at_level("WARNING"):
            beams = model.generate(**kwargs, generator=seeded())
            again = model.generate(**kwargs, generator=seeded())
    finally:
        hf_logging.disable_propagation()
    unguided = model.generate(**kwargs, latent_guidance_scale=0.0, generator=seeded())
    assert torch.equal(beams, unguided) and torch.equal(again, unguided)
    warnings = [r for r in caplog.records if "decodes without the config's latent guidance" in r.getMessage()]
    assert len(warnings) == 1  # `warning_once`: once per process
    assert model.guidance_scale(None, num_beams=2) == 0.0 and model.guidance_scale(None, num_beams=1) == 1.5


def test_default_guidance_is_off_without_ebm_and_an_explicit_scale_is_refused(processor):
    model = sharpen(make_model("gpt2", seed=5, latent_guidance_scale=3.0))
    inputs = processor(CONVERSATIONS)
    kwargs = dict(**inputs, personality=PERSONALITY, use_ebm=False, max_new_tokens=6, do_sample=False, pad_token_id=50256)
    default = model.generate(**kwargs, generator=torch.Generator().manual_seed(0))
    off = model.generate(**kwargs, latent_guidance_scale=0.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(default, off)
    with pytest.raises(ValueError, match="use_ebm=True"):
        model.generate(**kwargs, latent_guidance_scale=2.0)
    latent = torch.randn(3, 16)
    from_latent = dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], max_new_tokens=6,
                       do_sample=False, pad_token_id=50256)
    assert torch.equal(model.generate(**from_latent, latent=latent),
                       model.generate(**from_latent, latent=latent, latent_guidance_scale=0.0))


# ---------------------------------------------------------------- sampler start scale
def test_start_scale_shrinks_the_starting_noise_and_one_is_the_paper_sample(processor):
    model = make_model("gpt2", seed=6)
    inputs = processor(CONVERSATIONS)
    args = (inputs["prior_input_ids"], inputs["prior_attention_mask"], PERSONALITY)
    paper = model.sample_latent(*args, generator=torch.Generator().manual_seed(0))
    one = model.sample_latent(*args, generator=torch.Generator().manual_seed(0), sampler_start_scale=1.0)
    half = model.sample_latent(*args, generator=torch.Generator().manual_seed(0), sampler_start_scale=0.5)
    zero = model.sample_latent(*args, sampler_start_scale=0.0)
    assert torch.equal(paper.latent, one.latent)
    assert torch.equal(zero.start_latent, zero.prior_mu)
    assert torch.allclose(half.start_latent - half.prior_mu, 0.5 * (paper.start_latent - paper.prior_mu), atol=1e-6)
    with pytest.raises(ValueError, match="sampler_start_scale"):
        model.sample_latent(*args, sampler_start_scale=-1.0)


def test_the_pipeline_passes_the_guidance_scale_to_generate(processor):
    from transformers import pipeline

    model = sharpen(make_model("llama", seed=3, latent_prefix_length=2))
    chat = pipeline("personalized-dialogue", model=model, processor=processor)
    call = dict(personality=PERSONALITY, max_new_tokens=10, batch_size=3)
    texts = {}
    for scale in (0.0, 3.0):
        torch.manual_seed(0)
        texts[scale] = [o[0]["generated_text"] for o in chat(CONVERSATIONS, latent_guidance_scale=scale, **call)]
        inputs = processor(CONVERSATIONS)
        torch.manual_seed(0)
        direct = model.generate(**inputs, personality=PERSONALITY, max_new_tokens=10, pad_token_id=50256,
                                latent_guidance_scale=scale)
        assert texts[scale] == processor.batch_decode(direct, prompt_length=inputs["input_ids"].shape[1])
    assert texts[0.0] != texts[3.0]
