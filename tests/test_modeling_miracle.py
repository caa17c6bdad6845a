import logging

import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM, BertModel, GPT2LMHeadModel

from modeling_miracle import MiracleForPersonalizedGeneration

from .conftest import CONVERSATIONS, RESPONSES, make_model, tiny_decoder_config, tiny_encoder_config

KINDS = ["gpt2", "llama"]


def training_batch(processor, attribute_ids=(0, 1, 2), aspect_ids=(1, 0, 1)):
    batch = processor(CONVERSATIONS, responses=RESPONSES)
    batch["attribute_ids"] = torch.tensor(attribute_ids)
    batch["aspect_ids"] = torch.tensor(aspect_ids)
    return batch


@pytest.mark.parametrize("kind", KINDS)
def test_save_reload_gives_equal_logits_and_automodel_loads(kind, processor, tmp_path):
    model = make_model(kind)
    inputs = processor(CONVERSATIONS)
    logits = model(**inputs).logits
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    for loader in (MiracleForPersonalizedGeneration, AutoModel, AutoModelForCausalLM):
        reloaded = loader.from_pretrained(tmp_path).eval()
        assert type(reloaded) is MiracleForPersonalizedGeneration
        assert torch.equal(reloaded(**inputs).logits, logits)


@pytest.mark.parametrize("kind", KINDS)
def test_cached_greedy_decoding_equals_full_recomputation(kind, processor):
    model = make_model(kind, seed=1)
    # Larger weights than the default init so that the greedy path is not a constant token.
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(20.0)
    inputs = processor(CONVERSATIONS)
    assert (inputs["attention_mask"] == 0).any(), "the batch must contain left padding"
    latent = torch.randn(len(CONVERSATIONS), model.config.latent_size, generator=torch.Generator().manual_seed(3))
    kwargs = dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], latent=latent,
                  max_new_tokens=12, do_sample=False, pad_token_id=50256)
    cached = model.generate(**kwargs, use_cache=True)
    full = model.generate(**kwargs, use_cache=False)
    assert torch.equal(cached, full)
    prompt = inputs["input_ids"].shape[1]
    assert len(set(cached[:, prompt:].flatten().tolist())) > 3

    # A left-padded row decodes exactly as the same row alone without padding.
    row = 0
    real = inputs["attention_mask"][row].bool()
    alone = model.generate(input_ids=inputs["input_ids"][row:row + 1, real], latent=latent[row:row + 1],
                           max_new_tokens=12, do_sample=False, pad_token_id=50256)
    assert torch.equal(alone[0, real.sum():], cached[row, prompt:])


@pytest.mark.parametrize("switch", ["add_latent_to_embeddings", "use_latent_prefix"])
def test_each_injection_path_alone_makes_z_change_the_logits(switch, processor):
    other = {"add_latent_to_embeddings": "use_latent_prefix", "use_latent_prefix": "add_latent_to_embeddings"}[switch]
    model = make_model("llama", **{other: False})
    inputs = processor(CONVERSATIONS)
    z1, z2 = torch.zeros(3, 16), torch.ones(3, 16)
    out1 = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], latent=z1).logits
    out2 = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], latent=z2).logits
    assert not torch.allclose(out1, out2)


def grads_of(model):
    return {name: p.grad for name, p in model.named_parameters()}


def has_grad(grads, prefix):
    found = [g for name, g in grads.items() if name.startswith(prefix)]
    assert found, prefix
    return any(g is not None and g.abs().sum() > 0 for g in found)


@pytest.mark.parametrize("kind", KINDS)
def test_every_loss_component_is_finite_and_reaches_every_part(kind, processor):
    model = make_model(kind).train()
    model.kl_weight = 1.0
    with torch.no_grad():  # make the KL exceed the free-bits threshold
        model.posterior_head.proj.bias[:16].fill_(3.0)
    out = model(**training_batch(processor))
    for name in ("loss", "reconstruction_loss", "kl_loss", "classification_loss", "distance_loss"):
        value = getattr(out, name)
        assert value is not None and torch.isfinite(value), name
    assert out.kl_loss > 0 and out.distance_loss > 0
    out.loss.backward()
    grads = grads_of(model)
    for prefix in ("prior_encoder.", "posterior_encoder.", "decoder.", "prior_head.", "posterior_head.",
                   "latent_injection.to_embedding.", "latent_injection.to_prefix.", "attribute_heads.heads.attitude."):
        assert has_grad(grads, prefix), prefix


@pytest.mark.parametrize(
    "switch, removed, untouched",
    [
        ({"use_classification_loss": False}, "classification_loss", "attribute_heads."),
        ({"use_distance_loss": False}, "distance_loss", None),
        ({"use_posterior": False}, "kl_loss", "posterior_encoder."),
    ],
)
def test_switching_a_component_off_removes_it(switch, removed, untouched, processor):
    model = make_model("gpt2", **switch).train()
    out = model(**training_batch(processor))
    assert getattr(out, removed) is None
    parts = [out.reconstruction_loss]
    if out.kl_loss is not None:
        parts.append(out.kl_beta * model.config.kl_weight * out.kl_loss)
    parts += [x for x in (out.classification_loss, out.distance_loss) if x is not None]
    assert torch.allclose(out.loss, sum(parts))
    out.loss.backward()
    if untouched:
        assert not has_grad(grads_of(model), untouched)


def test_distance_loss_uses_cached_means_on_homogeneous_batches(processor):
    model = make_model("gpt2").train()
    first = model(**training_batch(processor, attribute_ids=(0, 0, 0)))
    assert first.distance_loss.item() == 0.0  # nothing cached yet
    second = model(**training_batch(processor, attribute_ids=(1, 1, 1)))
    assert second.distance_loss.item() > 0.0
    assert model.attribute_mean_seen.tolist() == [True, True, False]


def test_kl_beta_zero_decodes_from_the_posterior_mean(processor):
    model = make_model("gpt2").train()
    out = model(**training_batch(processor), kl_beta=0.0)
    assert torch.equal(out.latent, out.posterior_mu) and out.kl_beta == 0.0
    out = model(**training_batch(processor))  # the default weight is 1
    assert not torch.equal(out.latent, out.posterior_mu) and out.kl_beta == 1.0
    assert not hasattr(model, "kl_beta")  # the schedule is an argument, not model state


def test_input_ids_alone_decode_from_the_standard_prior_mean(processor):
    """Registered as `AutoModelForCausalLM`: `model(input_ids)` works, with z the mean of N(0, I)."""
    model = make_model("gpt2").eval()
    inputs = processor(CONVERSATIONS)
    alone = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    zeros = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], latent=torch.zeros(3, 16))
    assert torch.equal(alone.logits, zeros.logits) and not alone.latent.any()
    with pytest.raises(ValueError, match="forward needs decoder inputs"):
        model()


def test_encode_prior_returns_a_gaussian_per_context(processor):
    model = make_model("gpt2")
    inputs = processor(CONVERSATIONS)
    mu, logvar = model.encode_prior(inputs["prior_input_ids"], inputs["prior_attention_mask"])
    assert mu.shape == logvar.shape == (3, 16)
    # Padding does not change a context's encoding.
    mu0, _ = model.encode_prior(inputs["prior_input_ids"][:1, : inputs["prior_attention_mask"][0].sum()])
    assert torch.allclose(mu0, mu[:1], atol=1e-5)


def test_from_encoder_decoder_pretrained_keeps_backbone_weights(tmp_path):
    torch.manual_seed(0)
    BertModel(tiny_encoder_config(), add_pooling_layer=False).save_pretrained(tmp_path / "enc")
    GPT2LMHeadModel(tiny_decoder_config("gpt2")).save_pretrained(tmp_path / "dec")
    model = MiracleForPersonalizedGeneration.from_encoder_decoder_pretrained(
        str(tmp_path / "enc"), str(tmp_path / "dec"), attributes={"tone": ["dry", "warm"]}, latent_size=8
    )
    encoder = BertModel.from_pretrained(tmp_path / "enc", add_pooling_layer=False)
    decoder = GPT2LMHeadModel.from_pretrained(tmp_path / "dec")
    for name, tensor in encoder.state_dict().items():
        assert torch.equal(model.prior_encoder.state_dict()[name], tensor)
        assert torch.equal(model.posterior_encoder.state_dict()[name], tensor)
    for name, tensor in decoder.state_dict().items():
        assert torch.equal(model.decoder.state_dict()[name], tensor)
    assert model.config.attributes == {"tone": ["dry", "warm"]}
    assert list(model.attribute_heads.heads) == ["tone"]


class _Messages(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_an_encoder_checkpoints_unused_pooler_is_not_reported_other_findings_are(tmp_path):
    torch.manual_seed(0)
    BertModel(tiny_encoder_config()).save_pretrained(tmp_path / "pooled")  # with the pooler MIRACLE leaves out
    extra = BertModel(tiny_encoder_config())
    extra.unknown = torch.nn.Linear(2, 2)  # a weight no BertModel has
    extra.save_pretrained(tmp_path / "extra")
    GPT2LMHeadModel(tiny_decoder_config("gpt2")).save_pretrained(tmp_path / "dec")
    handler, loader_logger = _Messages(), logging.getLogger("transformers.modeling_utils")
    loader_logger.addHandler(handler)
    try:
        MiracleForPersonalizedGeneration.from_encoder_decoder_pretrained(str(tmp_path / "pooled"), str(tmp_path / "dec"))
        assert not [m for m in handler.messages if "LOAD REPORT" in m]
        MiracleForPersonalizedGeneration.from_encoder_decoder_pretrained(str(tmp_path / "extra"), str(tmp_path / "dec"))
        reports = [m for m in handler.messages if "LOAD REPORT" in m]
        assert len(reports) == 1 and "unknown.weight" in reports[0]
    finally:
        loader_logger.removeHandler(handler)


def test_shared_encoder_has_one_encoder_and_round_trips(processor, tmp_path):
    model = make_model("gpt2", share_encoder=True)
    assert not hasattr(model, "posterior_encoder")
    assert model.get_posterior_encoder() is model.prior_encoder
    model.save_pretrained(tmp_path)
    reloaded = MiracleForPersonalizedGeneration.from_pretrained(tmp_path).eval()
    batch = processor(CONVERSATIONS, responses=RESPONSES)
    assert torch.equal(reloaded(**batch).loss, model(**batch).loss)


def test_training_logits_cover_only_the_response_window_with_the_same_loss(processor):
    from modeling_miracle.losses import reconstruction_loss

    model = make_model("llama")
    batch = processor(CONVERSATIONS, responses=RESPONSES)
    out = model(**batch)
    assert out.logits.shape[1] < batch["input_ids"].shape[1]
    full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], latent=out.latent).logits
    assert torch.allclose(out.reconstruction_loss, reconstruction_loss(full, batch["labels"]), atol=1e-5)


def test_gradient_checkpointing_with_the_latent_prefix_is_refused(processor):
    for kind in KINDS:
        model = make_model(kind).train()
        model.decoder.gradient_checkpointing_enable()
        with pytest.raises(ValueError, match="gradient checkpointing"):
            model(**processor(CONVERSATIONS, responses=RESPONSES))
    embedding_only = make_model("llama", use_latent_prefix=False).train()
    embedding_only.decoder.gradient_checkpointing_enable()
    assert torch.isfinite(embedding_only(**processor(CONVERSATIONS, responses=RESPONSES)).loss)


def test_attribute_mean_cache_is_the_same_in_every_process(tmp_path):
    """Two gloo processes, different batches: L_D's cached attribute means are those of the global batch in both
    (summed across processes), not each process's own."""
    import json
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    worker = Path(__file__).with_name("distance_cache_worker.py")
    processes = [subprocess.Popen([sys.executable, str(worker), str(rank), "2", port, str(tmp_path)],
                                  stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    for process in processes:
        assert process.wait(timeout=300) == 0, process.stderr.read()[-3000:]
    records = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert records[0]["cache"] == records[1]["cache"] and records[0]["seen"] == records[1]["seen"]
    prior_mu = torch.tensor(records[0]["prior_mu"] + records[1]["prior_mu"])
    attribute_ids = torch.tensor(records[0]["attribute_ids"] + records[1]["attribute_ids"])
    cache = torch.tensor(records[0]["cache"])
    for attribute in (0, 1):
        expected = prior_mu[attribute_ids == attribute].mean(0)
        assert torch.allclose(cache[attribute], expected, atol=1e-5)
    assert records[0]["seen"] == [True, True, False]
    own = prior_mu[:3][attribute_ids[:3] == 0].mean(0)  # rank 0's own mean differs from the global one
    assert not torch.allclose(cache[0], own, atol=1e-3)
