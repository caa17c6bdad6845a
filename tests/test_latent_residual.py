"""`latent_residual_layers`: a learned offset W_l z added to the decoder's residual stream after chosen blocks.
Off must be today's model exactly; on, it must change the logits, keep cached decoding exact and round-trip."""

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError

from modeling_miracle import MiracleForPersonalizedGeneration
from modeling_miracle.latent_modules import decoder_blocks

from .conftest import CONVERSATIONS, make_model
from .test_latent_control_options import PERSONALITY, sharpen


def latent(batch=3, seed=0):
    return torch.randn(batch, 16, generator=torch.Generator().manual_seed(seed))


def test_off_by_default_and_zero_offsets_are_todays_model(processor):
    plain = make_model("llama", seed=0)
    assert plain.latent_injection.to_residual is None
    residual = make_model("llama", seed=0, latent_residual_layers=[0, 1])
    missing, unexpected = residual.load_state_dict(plain.state_dict(), strict=False)
    assert set(missing) == {f"latent_injection.to_residual.{l}.{p}" for l in (0, 1) for p in ("weight", "bias")}
    assert not unexpected
    inputs, z = processor(CONVERSATIONS), latent()
    assert not torch.equal(residual(**inputs, latent=z).logits, plain(**inputs, latent=z).logits)
    residual.latent_injection.reset_parameters()  # zero offsets (and a zero prefix / embedding map)
    plain.latent_injection.reset_parameters()
    assert torch.equal(residual(**inputs, latent=z).logits, plain(**inputs, latent=z).logits)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_offsets_are_added_after_the_named_block_only_while_decoding(kind, processor):
    model = make_model(kind, seed=1, latent_residual_layers=[0])
    inputs, z = processor(CONVERSATIONS), latent()
    blocks = decoder_blocks(model.decoder)
    seen = {}
    blocks[0].register_forward_hook(lambda module, args, output: seen.__setitem__(
        "block 0 output", (output[0] if isinstance(output, tuple) else output).detach().clone()))
    blocks[1].register_forward_pre_hook(lambda module, args, kwargs: seen.__setitem__(
        "block 1 input", (args[0] if args else kwargs["hidden_states"]).detach().clone()), with_kwargs=True)
    model(**inputs, latent=z)
    with_offset = dict(seen)
    offset = model.latent_injection.to_residual["0"](z)
    with torch.no_grad():
        model.latent_injection.to_residual["0"].weight.zero_()
        model.latent_injection.to_residual["0"].bias.zero_()
    model(**inputs, latent=z)
    assert torch.equal(with_offset["block 0 output"], seen["block 0 output"])
    assert torch.allclose(with_offset["block 1 input"] - seen["block 1 input"],
                          offset[:, None, :].expand_as(seen["block 1 input"]), atol=1e-5)
    assert [len(b._forward_hooks) for b in blocks] == [1, 0]  # only the test's own hook is left


def test_scale_multiplies_the_offset_and_zero_removes_it(processor):
    model = make_model("llama", seed=2, latent_residual_layers=[0])
    inputs, z = processor(CONVERSATIONS), latent()
    model.config.latent_residual_scale = 0.0
    no_offset = model(**inputs, latent=z).logits
    model.config.latent_residual_scale = 3.0
    strong = model(**inputs, latent=z).logits
    with torch.no_grad():
        model.latent_injection.to_residual["0"].weight.mul_(3.0)
        model.latent_injection.to_residual["0"].bias.mul_(3.0)
    model.config.latent_residual_scale = 1.0
    assert torch.allclose(model(**inputs, latent=z).logits, strong, rtol=1e-4, atol=1e-3)
    for parameter in model.latent_injection.to_residual.parameters():
        torch.nn.init.zeros_(parameter)
    assert torch.equal(model(**inputs, latent=z).logits, no_offset)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_cached_decoding_is_exact_with_offsets_and_with_guidance(kind, processor):
    model = sharpen(make_model(kind, seed=3, latent_residual_layers=[0, 1]))
    inputs = processor(CONVERSATIONS)
    kwargs = dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], latent=latent(),
                  max_new_tokens=8, do_sample=False, pad_token_id=50256)
    assert torch.equal(model.generate(**kwargs, use_cache=True), model.generate(**kwargs, use_cache=False))
    guided = dict(**inputs, personality=PERSONALITY, max_new_tokens=8, do_sample=False, pad_token_id=50256,
                  latent_guidance_scale=2.0)
    cached = model.generate(**guided, generator=torch.Generator().manual_seed(0))
    assert torch.equal(cached, model.generate(**guided, use_cache=False, generator=torch.Generator().manual_seed(0)))


def test_residual_offsets_round_trip(processor, tmp_path):
    model = make_model("llama", seed=4, latent_residual_layers=[1], latent_residual_scale=1.5)
    inputs, z = processor(CONVERSATIONS), latent()
    logits = model(**inputs, latent=z).logits
    model.save_pretrained(tmp_path)
    reloaded = MiracleForPersonalizedGeneration.from_pretrained(tmp_path).eval()
    assert reloaded.config.latent_residual_layers == [1] and reloaded.config.latent_residual_scale == 1.5
    assert torch.equal(reloaded(**inputs, latent=z).logits, logits)


def test_residual_offsets_train_with_the_reconstruction_loss(processor):
    from .test_latent_control_options import training_batch

    model = make_model("gpt2", seed=5, latent_residual_layers=[1]).train()
    model(**training_batch(processor), kl_beta=0.0).loss.backward()
    assert model.latent_injection.to_residual["1"].weight.grad.abs().sum() > 0


def test_bad_residual_layers_are_refused_naming_the_valid_range():
    with pytest.raises(ValueError, match=r"blocks 0\.\.1"):
        make_model("gpt2", latent_residual_layers=[2])
    with pytest.raises(StrictDataclassClassValidationError, match="latent_residual_layers"):
        make_model("gpt2", latent_residual_layers=[-1])
    with pytest.raises(StrictDataclassClassValidationError, match="latent_residual_scale"):
        make_model("gpt2", latent_residual_scale=-1.0)
