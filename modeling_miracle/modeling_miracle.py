"""`MiracleForPersonalizedGeneration`: the MIRACLE dialogue CVAE (paper section 3.3) as a `PreTrainedModel`."""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers.utils import logging as hf_logging
from transformers import AutoModel, AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration import MiracleConfig
from .configuration.configuration_miracle import check_guidance_plausibility
from .configuration.validation import check_config_kwargs, check_value

from .latent_modules import AttributeHeads, GaussianHead, LatentInjection, pool_hidden_states
from .losses import (
    aspect_classification_loss,
    attribute_distance_loss,
    attribute_means,
    bag_of_words_loss,
    free_bits_kl,
    gaussian_kl,
    reconstruction_loss,
)
from .configuration.personality import Personality
from .sampling import SamplerSettings, solve_personality_ode


logger = hf_logging.get_logger(__name__)


class _PoolerOnlyLoadReport(logging.Filter):
    """Drops a checkpoint load report whose only rows are the pooler weights that MIRACLE leaves out."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "LOAD REPORT" not in message:
            return True
        rows = [line for line in message.splitlines() if "|" in line and not line.startswith(("Key", "-"))]
        return not rows or not all(row.split("|")[0].strip().startswith("pooler.") for row in rows)


def _without_pooler(load, *args, **kwargs):
    """An encoder built by `load` without its pooling layer (MIRACLE pools the hidden states itself), for encoder
    classes that have one; the others do not take `add_pooling_layer`. The checkpoint's pooler weights, expected to
    go unused, are not reported."""
    quiet, loader_logger = _PoolerOnlyLoadReport(), logging.getLogger("transformers.modeling_utils")
    loader_logger.addFilter(quiet)
    try:
        return load(*args, add_pooling_layer=False, **kwargs)
    except TypeError:
        return load(*args, **kwargs)
    finally:
        loader_logger.removeFilter(quiet)


@dataclass
class MiracleOutput(ModelOutput):
    """Output of [`MiracleForPersonalizedGeneration.forward`]; every loss component is reported separately."""

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    cache: object | None = None
    latent: torch.FloatTensor | None = None
    prior_mu: torch.FloatTensor | None = None
    prior_logvar: torch.FloatTensor | None = None
    posterior_mu: torch.FloatTensor | None = None
    posterior_logvar: torch.FloatTensor | None = None
    reconstruction_loss: torch.FloatTensor | None = None
    kl_loss: torch.FloatTensor | None = None
    classification_loss: torch.FloatTensor | None = None
    distance_loss: torch.FloatTensor | None = None
    bow_loss: torch.FloatTensor | None = None
    kl_beta: float | None = None


@dataclass
class LatentSample(ModelOutput):
    """Result of [`MiracleForPersonalizedGeneration.sample_latent`].

    `aspects` / `weights`: the [`Personality`] asked for (see `personality`).
    `aspect_probability_before/after[b, i]`: latent-classifier probability of the aspect row b asked for attribute
    i, at the ODE start and end (NaN where the personality does not name attribute i).
    """

    latent: torch.FloatTensor | None = None
    start_latent: torch.FloatTensor | None = None
    prior_mu: torch.FloatTensor | None = None
    prior_logvar: torch.FloatTensor | None = None
    aspects: torch.LongTensor | None = None
    weights: torch.FloatTensor | None = None
    aspect_probability_before: torch.FloatTensor | None = None
    aspect_probability_after: torch.FloatTensor | None = None
    function_evaluations: int | None = None

    @property
    def personality(self) -> Personality:
        """The [`Personality`] this sample was asked for."""
        return Personality(self.aspects, self.weights)

    def diagnostics(self, attributes: dict[str, list[str]]) -> list[dict]:
        """Per row: `{attribute: {"aspect", "before", "after"}}` for the attributes the personality names."""
        rows = []
        for b in range(self.aspects.shape[0]):
            row = {}
            for i, (name, aspects) in enumerate(attributes.items()):
                index = int(self.aspects[b, i])
                if index >= 0:
                    row[name] = {
                        "aspect": aspects[index],
                        "before": float(self.aspect_probability_before[b, i]),
                        "after": float(self.aspect_probability_after[b, i]),
                    }
            rows.append(row)
        return rows


@dataclass
class MiracleGenerateOutput(ModelOutput):
    """Output of [`MiracleForPersonalizedGeneration.generate`] with `return_latent_sample=True`."""

    sequences: torch.LongTensor | None = None
    latent_sample: LatentSample | None = None
    generate_output: object | None = None


class MiracleForPersonalizedGeneration(PreTrainedModel, GenerationMixin):
    """MIRACLE: prior/posterior encoders -> z -> any causal LM decoder, with one latent classifier head per attribute.

    z reaches the decoder by an embedding add and a one-token latent prefix in the KV cache (injected inside
    `forward` whenever the cache is empty, so the standard `GenerationMixin` path with the cache on works).
    """

    config_class = MiracleConfig
    base_model_prefix = "miracle"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    accepts_loss_kwargs = False
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True

    def __init__(self, config: MiracleConfig, prior_encoder=None, posterior_encoder=None, decoder=None):
        super().__init__(config)
        self.prior_encoder = prior_encoder if prior_encoder is not None else self._encoder_from_config(config.encoder)
        if not config.share_encoder:
            self.posterior_encoder = (
                posterior_encoder if posterior_encoder is not None else self._encoder_from_config(config.encoder)
            )
        self.decoder = decoder if decoder is not None else AutoModelForCausalLM.from_config(config.decoder)
        for backbone in (self.prior_encoder, self.get_posterior_encoder(), self.decoder):
            # Building MiracleConfig from a backbone's config object resets its attention implementation: pick
            # the backbone's default (sdpa where supported) again, as its own __init__ would.
            if backbone.config._attn_implementation is None:
                backbone.config._attn_implementation_internal = backbone._check_and_adjust_attn_implementation(
                    None, is_init_check=True
                )
        encoder_hidden = config.encoder.hidden_size
        self.prior_head = GaussianHead(encoder_hidden, config.latent_size)
        self.posterior_head = GaussianHead(encoder_hidden, config.latent_size)
        self.latent_injection = LatentInjection(
            config.latent_size, config.decoder, config.add_latent_to_embeddings, config.use_latent_prefix,
            config.latent_prefix_length, config.latent_residual_layers or (),
        )
        # Bag-of-words head (optional auxiliary loss): z -> one distribution over the decoder's vocabulary.
        self.bow_head = nn.Linear(config.latent_size, config.decoder.vocab_size) if config.bow_loss_weight > 0 else None
        self.attribute_heads = AttributeHeads(config.attributes, config.latent_size, config.head_hidden_size)
        # Last batch mean of z per attribute, for L_D on attribute-homogeneous batches (authors' cache).
        self.register_buffer(
            "attribute_mean_cache", torch.zeros(len(config.attributes), config.latent_size), persistent=False
        )
        self.register_buffer("attribute_mean_seen", torch.zeros(len(config.attributes), dtype=torch.bool), persistent=False)
        self.post_init()

    @staticmethod
    def _encoder_from_config(encoder_config):
        return _without_pooler(AutoModel.from_config, encoder_config)

    @torch.no_grad()
    def _init_weights(self, module):
        """Initialise MIRACLE's own layers; backbones keep their own (pretrained or random) weights."""
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                init.zeros_(module.bias)
        if isinstance(module, MiracleForPersonalizedGeneration):
            init.zeros_(module.attribute_mean_cache)
            init.zeros_(module.attribute_mean_seen)

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`, and also a local folder holding the backbones by reference (config +
        PEFT adapter, e.g. a LoRA run's `checkpoint-N`; see `adapter_folders`) or older default-model parts
        (adapter + `miracle_settings.json`): their base model is rebuilt and the adapter merged into it."""
        from .adapter_folders import is_adapter_folder, legacy_settings_file, load_adapter_folder

        if is_adapter_folder(pretrained_model_name_or_path):
            config = kwargs.get("config")
            return load_adapter_folder(pretrained_model_name_or_path, config if isinstance(config, MiracleConfig) else None,
                                       dtype=kwargs.get("dtype"))
        if legacy_settings_file(pretrained_model_name_or_path) is not None:
            from .default_model import load_default_model

            return load_default_model(pretrained_model_name_or_path)[0]
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)

    @classmethod
    def from_encoder_decoder_pretrained(
        cls,
        encoder_pretrained_model_name_or_path: str,
        decoder_pretrained_model_name_or_path: str,
        attributes: dict[str, list[str]] | None = None,
        encoder_kwargs: dict | None = None,
        decoder_kwargs: dict | None = None,
        **config_kwargs,
    ) -> "MiracleForPersonalizedGeneration":
        """Start from pretrained backbones (paper: `bert-base-uncased` + `microsoft/DialoGPT-medium`).

        `encoder_kwargs` / `decoder_kwargs` go to the backbones' `from_pretrained` (e.g. `gguf_file=`);
        `config_kwargs` (latent_size, loss switches, ...) go to [`MiracleConfig`].
        """
        encoder_kwargs, decoder_kwargs = dict(encoder_kwargs or {}), dict(decoder_kwargs or {})
        config_kwargs = check_config_kwargs(MiracleConfig, config_kwargs)  # a misspelt option is an error, not a new key
        prior = _without_pooler(AutoModel.from_pretrained, encoder_pretrained_model_name_or_path, **encoder_kwargs)
        decoder = AutoModelForCausalLM.from_pretrained(decoder_pretrained_model_name_or_path, **decoder_kwargs)
        config = MiracleConfig(encoder=prior.config, decoder=decoder.config, attributes=attributes, **config_kwargs)
        posterior = None
        if not config.share_encoder:
            posterior = copy.deepcopy(prior)
        model = cls(config, prior_encoder=prior, posterior_encoder=posterior, decoder=decoder)
        model.latent_injection.reset_parameters()  # a pretrained decoder starts undisturbed by z
        model.prior_head.reset_parameters()
        model.posterior_head.reset_parameters()
        return model.to(decoder.dtype)

    # ------------------------------------------------------------------ accessors
    @property
    def attribute_names(self) -> list[str]:
        return self.config.attribute_names

    def get_posterior_encoder(self):
        return self.prior_encoder if self.config.share_encoder else self.posterior_encoder

    @property
    def is_gradient_checkpointing(self) -> bool:
        """`is_activation_checkpointing` under its older name, which PEFT still reads when it wraps a model (the
        base property warns on every access)."""
        return self.is_activation_checkpointing

    def freeze_backbones(self):
        """Stop gradients into the encoder(s) and the decoder; MIRACLE's own layers stay trainable."""
        for module in (self.prior_encoder, self.get_posterior_encoder(), self.decoder):
            module.requires_grad_(False)
        return self

    def get_input_embeddings(self):
        return self.decoder.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.decoder.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.decoder.get_output_embeddings()

    def get_decoder(self):
        return self.decoder

    def add_attribute(self, name: str, aspects: list[str]) -> None:
        """Add a personal attribute: a new latent classifier head (randomly initialised) and the config entry.

        The model keeps working for the existing attributes; train the new head on single-aspect data of the new
        attribute (see `training.new_attribute`), then save: the head and the updated config round-trip.
        """
        if name in self.config.attributes:
            raise ValueError(f"Attribute {name!r} already exists; existing attributes: {self.config.attribute_names}.")
        attributes = {**self.config.attributes, name: list(aspects)}
        # Validate on copies: building a config from the backbones' config objects resets their attention setting.
        type(self.config)(encoder=copy.deepcopy(self.config.encoder), decoder=copy.deepcopy(self.config.decoder),
                          attributes=attributes)
        self.config.attributes = attributes
        reference = next(self.attribute_heads.parameters())
        head = AttributeHeads.make_head(self.config.latent_size, self.config.head_hidden_size, len(aspects))
        for module in head.modules():
            if isinstance(module, nn.Linear):
                self._init_weights(module)
        self.attribute_heads.heads[name] = head.to(device=reference.device, dtype=reference.dtype)
        self.attribute_mean_cache = torch.cat([self.attribute_mean_cache, self.attribute_mean_cache.new_zeros(1, self.config.latent_size)])
        self.attribute_mean_seen = torch.cat([self.attribute_mean_seen, self.attribute_mean_seen.new_zeros(1)])

    # ------------------------------------------------------------------ latent space
    def _encode(self, encoder, head, input_ids, attention_mask):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return head(pool_hidden_states(hidden, attention_mask, self.config.pooling))

    def encode_prior(self, prior_input_ids: torch.LongTensor, prior_attention_mask: torch.Tensor | None = None):
        """The context's prior Gaussian p(z|C): returns `(mu, logvar)`, each (batch, latent_size)."""
        return self._encode(self.prior_encoder, self.prior_head, prior_input_ids, prior_attention_mask)

    def encode_posterior(self, posterior_input_ids: torch.LongTensor, posterior_attention_mask: torch.Tensor | None = None):
        """The posterior Gaussian q(z|C, r) of a context and its response: `(mu, logvar)`."""
        return self._encode(self.get_posterior_encoder(), self.posterior_head, posterior_input_ids, posterior_attention_mask)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mu + sigma * eps (paper eq. 2)."""
        noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + (0.5 * logvar).exp() * noise

    def aspect_logits(self, latent: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits of every attribute head f_i(z), keyed by attribute name."""
        return self.attribute_heads(latent)

    @torch.no_grad()
    def aspect_probabilities(self, latent: torch.Tensor) -> dict[str, torch.Tensor]:
        """For a batch of latents, every attribute's aspect probabilities: `{attribute: (batch, n_aspects)}`."""
        return {name: logits.float().softmax(-1) for name, logits in self.aspect_logits(latent.to(self.dtype)).items()}

    def _chosen_probabilities(self, latent, personality) -> torch.Tensor:
        probabilities = self.aspect_probabilities(latent)
        chosen = torch.stack(
            [p.gather(1, personality.aspects[:, i : i + 1].clamp(min=0)).squeeze(1) for i, p in enumerate(probabilities.values())],
            dim=1,
        )
        return chosen.masked_fill(~personality.named, float("nan"))

    @torch.no_grad()
    def sample_latent(
        self,
        prior_input_ids: torch.LongTensor,
        prior_attention_mask: torch.Tensor | None = None,
        personality: Personality | dict | list[dict] | None = None,
        attribute_weights: dict | list[dict] | None = None,
        use_ebm: bool = True,
        generator: torch.Generator | None = None,
        start_latent: torch.Tensor | None = None,
        **sampler_overrides,
    ) -> LatentSample:
        """Draw z for each context, moved by the EBM ODE towards the requested personality (paper section 3.4).

        Args:
            prior_input_ids, prior_attention_mask: the contexts, tokenized for the encoder (see `MiracleProcessor`).
            personality: a [`Personality`], or `{attribute: aspect}` for all rows, or one such dict per row (aspects
                by name or index).
            attribute_weights: `{attribute: lambda}` (default 1 for each named attribute); a negative weight
                steers away from that aspect.
            use_ebm: `False` skips the ODE and returns the prior sample (the paper's "w/o EBM" ablation).
            generator: random generator for the starting sample.
            start_latent: start the ODE here instead of drawing a sample from the prior.
            sampler_*: overrides of the config's sampler settings (`sampler_method`, `sampler_rtol`, ...).

        Returns:
            [`LatentSample`] with the final z, the number of ODE function evaluations and, for each named aspect,
            its latent-classifier probability before and after sampling.
        """
        settings = SamplerSettings.from_config(self.config, **sampler_overrides)
        use_ebm = check_value("use_ebm", use_ebm, bool)
        target = Personality.resolve(self.config, personality, attribute_weights, prior_input_ids.shape[0]).to(self.device)
        prior_mu, prior_logvar = self.encode_prior(prior_input_ids.to(self.device), None if prior_attention_mask is None else prior_attention_mask.to(self.device))
        if settings.prior == "standard":
            prior_mu, prior_logvar = torch.zeros_like(prior_mu), torch.zeros_like(prior_logvar)
        if start_latent is None:
            start_logvar = prior_logvar + 2 * math.log(settings.start_scale) if settings.start_scale > 0 else None
            start = prior_mu if start_logvar is None else self.reparameterize(prior_mu, start_logvar, generator=generator)
        else:
            start = start_latent
        return self._solve(start, prior_mu, prior_logvar, target, settings, use_ebm)

    def _solve(self, start, prior_mu, prior_logvar, target: Personality, settings: SamplerSettings,
               use_ebm: bool = True) -> LatentSample:
        """`start` moved by the ODE towards `target` (kept without `use_ebm` or without any weight), with the
        latent-classifier probability of each asked aspect before and after."""
        latent, evaluations = start, 0
        if use_ebm and target.steers:
            latent, evaluations = solve_personality_ode(
                self.attribute_heads, start, target, settings, prior_mu.float(), prior_logvar.float()
            )
        return LatentSample(
            latent=latent,
            start_latent=start,
            prior_mu=prior_mu,
            prior_logvar=prior_logvar,
            aspects=target.aspects,
            weights=target.weights,
            aspect_probability_before=self._chosen_probabilities(start, target),
            aspect_probability_after=self._chosen_probabilities(latent, target),
            function_evaluations=evaluations,
        )

    @torch.no_grad()
    def opposite_latent(self, sample: LatentSample, **sampler_overrides) -> torch.Tensor:
        """The contrast latent of latent guidance: `sample`'s start moved by the ODE *away* from the aspects it was
        asked for (its attribute weights negated), from the same prior."""
        settings = SamplerSettings.from_config(self.config, **sampler_overrides)
        opposite = sample.personality.opposite()
        return self._solve(sample.start_latent, sample.prior_mu, sample.prior_logvar, opposite, settings).latent

    def guidance_scale(self, latent_guidance_scale: float | None = None, use_ebm: bool = True,
                       has_latent: bool = False, has_guidance_latent: bool = False, num_beams: int = 1) -> float:
        """The latent guidance scale of one `generate` call: the one place that decides it.

        An explicit scale is used as given, and refused where it cannot apply (beam search; no opposite z because
        `use_ebm=False` or a given `latent` without `guidance_latent`). Without one, the config's default applies
        where an opposite z can be had (EBM sampling, or a given `guidance_latent`), so `use_ebm=False` is the
        paper's unguided "w/o EBM" ablation; with beams the default falls back to unguided decoding (logged once).
        """
        can_guide = has_guidance_latent or (not has_latent and use_ebm)
        if latent_guidance_scale is None:
            scale = float(self.config.latent_guidance_scale) if can_guide else 0.0
            if scale and num_beams > 1:
                logger.warning_once(
                    f"Beam search (num_beams={num_beams}) decodes without the config's latent guidance "
                    f"(latent_guidance_scale={scale}); guidance works with greedy search and sampling."
                )
                return 0.0
            return scale
        scale = float(check_value("latent_guidance_scale", latent_guidance_scale, float))
        if scale and num_beams > 1:
            raise ValueError(
                f"Latent guidance works with greedy search and sampling, not beam search (`num_beams`={num_beams}): "
                "drop `latent_guidance_scale` (or set it to 0) to use beams."
            )
        if scale and not use_ebm and not has_latent and not has_guidance_latent:
            raise ValueError("Latent guidance moves z away from the personality with the EBM ODE: it needs "
                             "`use_ebm=True` (or a `guidance_latent`).")
        if scale and has_latent and not has_guidance_latent:
            raise ValueError("With a given `latent`, latent guidance needs `guidance_latent` too (see `opposite_latent`).")
        return scale

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        prior_input_ids: torch.LongTensor | None = None,
        prior_attention_mask: torch.Tensor | None = None,
        personality: Personality | dict | list[dict] | None = None,
        attribute_weights: dict | list[dict] | None = None,
        use_ebm: bool = True,
        latent: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        latent_guidance_scale: float | None = None,
        guidance_latent: torch.Tensor | None = None,
        latent_guidance_plausibility: float | None = None,
        return_latent_sample: bool = False,
        start_latent: torch.Tensor | None = None,
        **kwargs,
    ):
        """Encode the context, sample z with the EBM ODE for `personality`, then decode with `GenerationMixin`.

        Takes the processor's inputs (`input_ids`, `attention_mask`, `prior_input_ids`, `prior_attention_mask`),
        the personality arguments of [`sample_latent`] (including `sampler_*` overrides) and every usual generation
        argument (greedy by default; `do_sample`, `num_beams`, `num_return_sequences`, `max_new_tokens`, ...).
        Pass `latent=` to decode from a given z instead of sampling one (or `start_latent=` to start the ODE there).
        Each beam / returned sequence keeps its row's latent. A `streamer=` gets the batch's new tokens step by step
        (one per conversation row, also with latent guidance, which doubles the batch only inside `forward`).

        `latent_guidance_scale` (default: `config.latent_guidance_scale`, 0 = off) turns on decoding-time latent
        guidance: the same start is also moved by the ODE *away* from the personality (weights negated), and the
        next-token logits are pushed from those under that opposite z towards those under z. Give
        `guidance_latent=` to choose the opposite z yourself; `latent_guidance_plausibility` (default: the config's)
        rules out tokens below that share of the top token's probability under z. See [`guidance_scale`] for when
        the config's default applies (not with `use_ebm=False`, a given `latent`, or beam search).

        `return_latent_sample=True` returns a [`MiracleGenerateOutput`]: the sequences, the [`LatentSample`]
        (`None` with a given `latent`) and what `GenerationMixin.generate` returned.
        """
        sampler_overrides = {k: kwargs.pop(k) for k in list(kwargs) if k.startswith("sampler_")}
        use_ebm = check_value("use_ebm", use_ebm, bool)
        scale = self.guidance_scale(latent_guidance_scale, use_ebm, latent is not None, guidance_latent is not None,
                                    self._num_beams(kwargs))
        if input_ids is None:
            raise ValueError("generate needs the decoder prompt `input_ids` (from MiracleProcessor).")
        sample = None
        if latent is None:
            if prior_input_ids is None:
                raise ValueError(
                    "generate needs the context for the prior encoder (`prior_input_ids`, from MiracleProcessor) "
                    "or a `latent`."
                )
            sample = self.sample_latent(
                prior_input_ids, prior_attention_mask, personality=personality, attribute_weights=attribute_weights,
                use_ebm=use_ebm, generator=generator, start_latent=start_latent, **sampler_overrides,
            )
            latent = sample.latent
            if scale and guidance_latent is None:
                guidance_latent = self.opposite_latent(sample, **sampler_overrides)
        elif personality is not None or sampler_overrides or start_latent is not None:
            raise ValueError("Pass either `latent` or `personality` / `start_latent` / sampler options, not both.")
        self._check_latent(latent, input_ids.shape[0], "latent")
        if scale:
            self._check_latent(guidance_latent, input_ids.shape[0], "guidance_latent")
            kwargs.update(guidance_latent=guidance_latent.to(self.device), latent_guidance_scale=scale)
            if latent_guidance_plausibility is not None:
                kwargs["latent_guidance_plausibility"] = check_guidance_plausibility(
                    check_value("latent_guidance_plausibility", latent_guidance_plausibility, float))
        output = super().generate(input_ids=input_ids, attention_mask=attention_mask, latent=latent.to(self.device),
                                  **kwargs)
        if not return_latent_sample:
            return output
        sequences = output if isinstance(output, torch.Tensor) else output.sequences
        return MiracleGenerateOutput(sequences=sequences, latent_sample=sample, generate_output=output)

    def _num_beams(self, generate_kwargs: dict) -> int:
        """The beam count a `GenerationMixin.generate` call with these kwargs will use."""
        if generate_kwargs.get("num_beams") is not None:
            return int(generate_kwargs["num_beams"])
        generation_config = generate_kwargs.get("generation_config") or self.generation_config
        return int(generation_config.num_beams or 1)

    def _check_latent(self, latent: torch.Tensor, batch: int, name: str) -> None:
        if latent.shape != (batch, self.config.latent_size):
            raise ValueError(
                f"`{name}` must have shape (batch={batch}, latent_size={self.config.latent_size}); "
                f"got {tuple(latent.shape)}."
            )
        if not torch.isfinite(latent).all():
            raise ValueError(f"`{name}` contains NaN or infinite values.")

    # ------------------------------------------------------------------ decoder with latent
    def _decoder_inputs(self, input_ids, inputs_embeds, attention_mask, position_ids, cache, latent):
        """Embeddings (+ z), the prefix cache when the cache is empty, the mask extended by the prefix, positions."""
        if inputs_embeds is None:
            inputs_embeds = self.decoder.get_input_embeddings()(input_ids)
        batch, length = inputs_embeds.shape[:2]
        inputs_embeds = self.latent_injection.add_to_embeddings(inputs_embeds, latent)
        prefix_length = self.latent_injection.prefix_length
        past = cache.get_seq_length() if cache is not None else 0
        if prefix_length and past == 0:
            cache = self.latent_injection.prefix_cache(latent, inputs_embeds.dtype)
            past = prefix_length
        past_tokens = past - prefix_length if past else 0
        if attention_mask is None:
            attention_mask = torch.ones(batch, past_tokens + length, dtype=torch.long, device=inputs_embeds.device)
        if position_ids is None:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -length:]
        if prefix_length:
            attention_mask = torch.cat([attention_mask.new_ones(batch, prefix_length), attention_mask], dim=-1)
        return inputs_embeds, attention_mask, position_ids, cache

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        latent: torch.Tensor | None = None,
        prior_input_ids: torch.LongTensor | None = None,
        prior_attention_mask: torch.Tensor | None = None,
        posterior_input_ids: torch.LongTensor | None = None,
        posterior_attention_mask: torch.Tensor | None = None,
        attribute_ids: torch.LongTensor | None = None,
        aspect_ids: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        guidance_latent: torch.Tensor | None = None,
        latent_guidance_scale: float = 0.0,
        latent_guidance_plausibility: float | None = None,
        kl_beta: float = 1.0,
        **kwargs,
    ) -> MiracleOutput:
        r"""
        Decode with a latent z and, when training inputs are given, compute the paper's loss (eq. 3-6).

        z is `latent` when given (generation); otherwise the posterior sample (training, `use_posterior`), or the
        prior sample. `attribute_ids` (index of each row's attribute in `config.attributes`) and `aspect_ids`
        (index of its aspect, -100 for none) drive L_C and L_D. `labels` (decoder ids, -100 outside the response
        + EOS) drive the reconstruction loss. `kl_beta` is the cyclical KL schedule's weight at this step (the
        trainer passes it; 1 otherwise); while it is 0, training decodes from the posterior mean.

        With only `input_ids` (as any causal LM), z is the mean of the standard prior N(0, I): zeros.

        Latent guidance (generation): with `guidance_latent` (z moved to the opposite aspects) and a non-zero
        `latent_guidance_scale` s, each row is decoded under both latents (the cache holds both) and the logits are
        `l(z) + s * (l(z) - l(guidance_latent))`, as in classifier-free guidance.
        """
        beta = float(kl_beta)
        output, kl = self._latent_for_step(input_ids, inputs_embeds, latent, prior_input_ids, prior_attention_mask,
                                           posterior_input_ids, posterior_attention_mask, beta)
        if input_ids is None and inputs_embeds is None:
            if attribute_ids is None:
                raise ValueError("forward needs decoder inputs: `input_ids` (or `inputs_embeds`).")
            # Latent-only step (e.g. training a new attribute head on the frozen latent space): no decoding.
            return self._add_losses(output, None, kl, attribute_ids, aspect_ids, beta)
        if self.training and self.config.word_dropout > 0 and labels is not None:
            inputs_embeds = self._drop_response_words(input_ids, inputs_embeds, labels)
        if labels is not None and isinstance(logits_to_keep, int) and logits_to_keep == 0:
            # Responses sit at the end of left-padded rows: only compute logits over the labelled window.
            logits_to_keep = self._label_window(labels)
            labels = labels[:, -logits_to_keep:]
        if self.training and self.config.use_latent_prefix and getattr(self.decoder, "is_activation_checkpointing", False):
            raise ValueError(
                "Decoders drop the KV cache (and so the latent prefix) under gradient checkpointing in training; "
                "disable gradient checkpointing or set `use_latent_prefix=False` in the config."
            )
        guided = guidance_latent is not None and latent_guidance_scale != 0
        if guided and labels is not None:
            raise ValueError("Latent guidance is a decoding option; do not pass `labels` with `guidance_latent`.")
        output.logits, output.cache = self._decode(
            input_ids, inputs_embeds, attention_mask, position_ids, cache, output.latent, use_cache, logits_to_keep,
            guidance_latent if guided else None, **kwargs,
        )
        if guided:
            conditional, opposite = output.logits.chunk(2)
            output.logits = self._guided_logits(conditional, opposite, latent_guidance_scale, latent_guidance_plausibility)
        if labels is None and attribute_ids is None:
            return output
        return self._add_losses(output, labels, kl, attribute_ids, aspect_ids, beta)

    def _latent_for_step(self, input_ids, inputs_embeds, latent, prior_input_ids, prior_attention_mask,
                         posterior_input_ids, posterior_attention_mask, beta):
        """z of one forward call, in a `MiracleOutput` with the Gaussians it came from, and the KL term (or None):
        the given `latent`; else the posterior sample (its mean in eval or while beta is 0) with the KL to the
        prior; else the prior sample (its mean in eval); with decoder inputs alone, the standard prior's mean."""
        config = self.config
        prior_mu = prior_logvar = post_mu = post_logvar = kl = None
        if latent is None and prior_input_ids is None:
            if input_ids is None and inputs_embeds is None:
                raise ValueError("forward needs decoder inputs (`input_ids`), a `latent`, or the prior encoder inputs "
                                 "(`prior_input_ids`, from MiracleProcessor).")
            # A causal LM call without MIRACLE's inputs: z is the standard prior's mean.
            reference = input_ids if input_ids is not None else inputs_embeds
            latent = torch.zeros(reference.shape[0], config.latent_size, device=reference.device)
        if latent is None:
            prior_mu, prior_logvar = self.encode_prior(prior_input_ids, prior_attention_mask)
            if config.use_posterior and posterior_input_ids is not None:
                post_mu, post_logvar = self.encode_posterior(posterior_input_ids, posterior_attention_mask)
                # While beta is 0 the authors decode from the posterior mean instead of a sample.
                latent = post_mu if not self.training or beta == 0.0 else self.reparameterize(post_mu, post_logvar)
                kl = free_bits_kl(gaussian_kl(post_mu, post_logvar, prior_mu, prior_logvar), config.kl_threshold)
            else:
                latent = self.reparameterize(prior_mu, prior_logvar) if self.training else prior_mu
        output = MiracleOutput(latent=latent.to(self.dtype), prior_mu=prior_mu, prior_logvar=prior_logvar,
                               posterior_mu=post_mu, posterior_logvar=post_logvar)
        return output, kl

    def _decode(self, input_ids, inputs_embeds, attention_mask, position_ids, cache, latent, use_cache,
                logits_to_keep, guidance_latent=None, **kwargs):
        """The decoder's logits and cache under z (latent prefix, embedding add, residual offsets); with a
        `guidance_latent` every row is decoded twice, under z and then under it (the batch doubled)."""
        if guidance_latent is not None:
            input_ids, inputs_embeds, attention_mask, position_ids = (
                None if t is None else torch.cat([t, t]) for t in (input_ids, inputs_embeds, attention_mask, position_ids)
            )
            latent = torch.cat([latent, guidance_latent.to(latent.dtype)])
        embeds, mask, positions, cache = self._decoder_inputs(
            input_ids, inputs_embeds, attention_mask, position_ids, cache, latent
        )
        residual_scale = 1.0 if self.training else self.config.latent_residual_scale
        with self.latent_injection.residual_offsets(self.decoder, latent, residual_scale):
            decoder_out = self.decoder(
                inputs_embeds=embeds,
                attention_mask=mask,
                position_ids=positions,
                cache=cache,
                use_cache=use_cache,
                logits_to_keep=logits_to_keep,
                **kwargs,
            )
        return decoder_out.logits, (decoder_out.cache if use_cache is not False else None)

    def _guided_logits(self, conditional, opposite, scale, plausibility=None):
        """`l(z) + s (l(z) - l(z_away))`; with a plausibility a (default `config.latent_guidance_plausibility`), tokens
        whose probability under z is below a times the top token's are ruled out (set to the dtype's minimum)."""
        guided = conditional + scale * (conditional - opposite)
        plausibility = self.config.latent_guidance_plausibility if plausibility is None else plausibility
        if plausibility > 0:  # p(token) < a * p(top)  <=>  logit(token) < logit(top) + log a (the normaliser cancels)
            implausible = conditional < conditional.max(-1, keepdim=True).values + math.log(plausibility)
            guided = guided.masked_fill(implausible, torch.finfo(guided.dtype).min)
        return guided

    def _drop_response_words(self, input_ids, inputs_embeds, labels):
        """Word dropout: zero the input embedding of a random `config.word_dropout` share of response tokens."""
        if inputs_embeds is None:
            inputs_embeds = self.decoder.get_input_embeddings()(input_ids)
        drop = (labels != -100) & (torch.rand(labels.shape, device=labels.device) < self.config.word_dropout)
        return inputs_embeds.masked_fill(drop.unsqueeze(-1).to(inputs_embeds.device), 0.0)

    @staticmethod
    def _label_window(labels: torch.Tensor) -> int:
        """Trailing positions that cover every label plus the position predicting the first one."""
        labelled = torch.nonzero((labels != -100).any(0))
        if labelled.numel() == 0:
            return labels.shape[1]
        return min(labels.shape[1], labels.shape[1] - int(labelled[0]) + 1)

    def _add_losses(self, output, labels, kl, attribute_ids, aspect_ids, beta):
        config = self.config
        loss = output.latent.new_zeros((), dtype=torch.float32)
        output.kl_beta = beta
        if labels is not None:
            output.reconstruction_loss = reconstruction_loss(output.logits, labels)
            loss = loss + output.reconstruction_loss
        if labels is not None and self.bow_head is not None:
            output.bow_loss = bag_of_words_loss(self.bow_head(output.latent), labels)
            loss = loss + config.bow_loss_weight * output.bow_loss
        if kl is not None:
            output.kl_loss = kl
            loss = loss + beta * config.kl_weight * kl
        if attribute_ids is not None:
            if config.use_classification_loss and aspect_ids is not None:
                output.classification_loss = aspect_classification_loss(
                    self.aspect_logits(output.latent), attribute_ids, aspect_ids
                )
                loss = loss + config.classification_loss_weight * output.classification_loss
            if config.use_distance_loss:
                # Eq. 5 compares attribute means of z; the Gaussian means estimate them without the sampling noise
                # that dominates per-attribute means of small batches.
                means = output.posterior_mu if output.posterior_mu is not None else output.prior_mu
                output.distance_loss = self._distance_loss(output.latent if means is None else means, attribute_ids)
                loss = loss + config.distance_loss_weight * output.distance_loss
        output.loss = loss
        return output

    def _distance_loss(self, latent, attribute_ids):
        """L_D with batch means; attributes absent from the batch use their last cached mean (detached)."""
        means, present = attribute_means(latent, attribute_ids, len(self.config.attributes))
        if self.training:
            self._update_attribute_mean_cache(latent, attribute_ids)
        cached = (~present) & self.attribute_mean_seen
        means = torch.where(cached.unsqueeze(-1), self.attribute_mean_cache.to(means.dtype), means)
        return attribute_distance_loss(means, present | cached)

    @torch.no_grad()
    def _update_attribute_mean_cache(self, latent, attribute_ids) -> None:
        """Keep each attribute's latest batch mean of z (detached) for L_D on batches without that attribute. In a
        distributed run the per-attribute sums and counts are first summed over all processes, so every process
        caches the same means (those of the global batch) and computes L_D against the same cache."""
        one_hot = F.one_hot(attribute_ids.clamp(min=0), len(self.config.attributes)).to(latent.dtype)
        one_hot = one_hot * (attribute_ids >= 0).unsqueeze(-1)
        totals = torch.cat([one_hot.t() @ latent.detach(), one_hot.sum(0).unsqueeze(-1)], dim=-1)
        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
            torch.distributed.all_reduce(totals)
        counts = totals[:, -1]
        present = counts > 0
        means = totals[:, :-1] / counts.clamp(min=1).unsqueeze(-1)
        self.attribute_mean_cache[present] = means[present].to(self.attribute_mean_cache.dtype)
        self.attribute_mean_seen |= present


__all__ = ["LatentSample", "MiracleForPersonalizedGeneration", "MiracleGenerateOutput", "MiracleOutput"]
