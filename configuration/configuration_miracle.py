"""`MiracleConfig`: everything that defines a MIRACLE model (paper section 3, SPEC sections 2-3)."""

from __future__ import annotations

import math

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .validation import as_python_scalar, check_declared_fields, drop_gguf_quantization

# The paper's three attributes; the aspect order follows the authors' integer tags.
PAPER_ATTRIBUTES: dict[str, list[str]] = {
    "language_style": ["plain", "lyrical"],
    "attitude": ["pessimistic", "optimistic"],
    "mental_characteristics": ["emotional", "critical"],
}

POOLING_MODES = ("mean", "cls")
SAMPLER_PRIORS = ("context", "standard")
SAMPLER_METHODS = (
    "dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun",
    "euler", "midpoint", "rk4", "explicit_adams", "implicit_adams",
)
BASE_MODEL_FORMS = ({"encoder", "decoder"}, {"encoder", "decoder", "decoder_gguf_file"}, {"miracle"})
FIXED_STEP_METHODS = ("euler", "midpoint", "rk4", "explicit_adams", "implicit_adams")


def check_guidance_plausibility(value: float) -> float:
    """`latent_guidance_plausibility` must lie in [0, 1) (a share of the top token's probability)."""
    if not 0 <= value < 1:
        raise ValueError(f"`latent_guidance_plausibility` must be in [0, 1); got {value}.")
    return float(value)


@strict
class MiracleConfig(PreTrainedConfig):
    r"""
    Configuration of a [`MiracleForPersonalizedGeneration`] model: a dialogue CVAE whose latent space is
    shaped by one classifier head per personal attribute, sampled with an energy-based ODE at inference.

    Args:
        encoder (`PreTrainedConfig` or `dict`):
            Config of the prior / posterior encoders (any `AutoModel` encoder; paper: bert-base-uncased).
        decoder (`PreTrainedConfig` or `dict`):
            Config of the decoder (any `AutoModelForCausalLM`; paper: DialoGPT-medium).
        attributes (`dict[str, list[str]]`):
            Ordered mapping attribute -> aspects. Aspect `i` of an attribute is the integer tag `i` of the
            authors' data format. Defaults to the paper's three attributes.
        latent_size (`int`): size of z (paper: 768).
        pooling (`str`): how encoder states become one vector, `"mean"` (masked mean) or `"cls"`.
        add_latent_to_embeddings (`bool`): add a linear map of z to every decoder input embedding.
        use_latent_prefix (`bool`): put a linear map of z as virtual keys/values in every decoder layer.
        latent_prefix_length (`int`): how many virtual key/value positions the latent prefix has per layer
            (paper / authors: 1). More positions give z more attention slots in the decoder.
        latent_residual_layers (`list[int]`, *optional*): decoder blocks after which a learned offset `W_l z` is
            added to the residual stream at every position (a steering vector computed from z; empty or None = off,
            as in the paper).
        latent_residual_scale (`float`): multiplier of those offsets at decoding (1 = as trained; > 1 pushes the
            personality harder at no extra cost, like a larger steering scale).
        share_encoder (`bool`): one encoder for both the prior and the posterior.
        head_hidden_size (`int`): hidden width of the two-layer latent classifier heads.
        kl_weight (`float`): weight of the KL term (on top of the cyclical schedule's beta).
        kl_threshold (`float`): free-bits threshold per latent dimension (paper/authors: 0.9).
        use_posterior (`bool`): train z from the posterior q(z|C,r) with a KL to the prior; `False` is
            the "w/o posterior" ablation (z from the prior, no KL).
        use_classification_loss / classification_loss_weight: the aspect classification loss L_C (eq. 4).
        use_distance_loss / distance_loss_weight: the attribute distance loss L_D (eq. 5).
        bow_loss_weight (`float`): weight of a bag-of-words loss predicting the response's tokens from z alone
            (Zhao et al. 2017, against posterior collapse; 0 = off, as in the paper).
        word_dropout (`float`): in training, the share of response input tokens whose embedding is zeroed so the
            decoder must lean on z (Bowman et al. 2016; 0 = off, as in the paper).
        latent_guidance_scale (`float`): default strength of decoding-time latent guidance: next-token logits
            under z are pushed away from those under z moved to the opposite aspects (0 = off, as in the paper).
        latent_guidance_plausibility (`float`): with guidance, only tokens whose probability under z is at least
            this share of the top token's stay allowed (the plausibility constraint of contrastive decoding, Li et
            al. 2023), so the push picks among tokens the decoder finds fluent (0 = no constraint).
        kl_num_cycles, kl_zero_ratio, kl_ramp_ratio: cyclical KL schedule (Fu et al. 2019): each cycle
            holds beta at 0 for `kl_zero_ratio` of it, ramps linearly to 1 over `kl_ramp_ratio`, then holds 1.
        sampler_method, sampler_rtol, sampler_atol, sampler_step_size, sampler_max_steps: ODE solver
            settings (torchdiffeq); `sampler_step_size` applies to fixed-step methods, `sampler_max_steps`
            caps the steps of adaptive ones.
        sampler_beta_min, sampler_beta_max: the linear beta(t) schedule of the ODE (appendix C.2).
        sampler_prior (`str`): start the ODE from the context's prior sample (`"context"`) or N(0, I).
        sampler_start_scale (`float`): scale of the noise in the ODE's starting sample, z0 = mu + scale * sigma * eps
            (paper: 1; 0 starts from the prior mean, nearer the posterior means the decoder was trained on).
        sampler_keep_prior_term (`bool`): keep the prior term of eq. 19 in the ODE's drift.
        base_model_source (`dict`, *optional*): set in a folder that holds only MIRACLE's own layers and a PEFT adapter
            (a LoRA run's `checkpoint-N`, the default model): where the rest of the weights come from, either
            `{"encoder": ..., "decoder": ...[, "decoder_gguf_file": ...]}` (a name or path each; `"default"` = the
            packaged offline backbone) or `{"miracle": <saved MIRACLE model>}`. None for ordinary full folders.
        sampler_max_distance (`float` or `None`): how far the ODE may move z from its start, in units of the
            context's prior spread `||sigma||` (the typical distance of a prior sample from its mean): the ODE's
            speed is capped at that radius per unit of time, so z stays where the decoder was trained (None: no bound).
    """

    model_type = "miracle"
    sub_configs_defaults = {
        "encoder": SubConfigSpec(config_class=AutoConfig, model_type="bert"),
        "decoder": SubConfigSpec(config_class=AutoConfig, model_type="gpt2"),
    }

    encoder: PreTrainedConfig | dict | None = None
    decoder: PreTrainedConfig | dict | None = None
    attributes: dict | list | None = None
    latent_size: int = 768
    pooling: str = "mean"
    add_latent_to_embeddings: bool = True
    use_latent_prefix: bool = True
    latent_prefix_length: int = 1
    latent_residual_layers: list | None = None
    latent_residual_scale: float = 1.0
    share_encoder: bool = False
    head_hidden_size: int = 256
    kl_weight: float = 1.0
    kl_threshold: float = 0.9
    use_posterior: bool = True
    use_classification_loss: bool = True
    classification_loss_weight: float = 1.0
    use_distance_loss: bool = True
    distance_loss_weight: float = 1.0
    bow_loss_weight: float = 0.0
    word_dropout: float = 0.0
    latent_guidance_scale: float = 0.0
    latent_guidance_plausibility: float = 0.0
    kl_num_cycles: int = 4
    kl_zero_ratio: float = 0.0
    kl_ramp_ratio: float = 0.5
    sampler_method: str = "dopri5"
    sampler_rtol: float = 1e-3
    sampler_atol: float = 1e-3
    sampler_step_size: float | None = None
    sampler_max_steps: int | None = None
    sampler_beta_min: float = 0.1
    sampler_beta_max: float = 20.0
    sampler_prior: str = "context"
    sampler_keep_prior_term: bool = False
    sampler_start_scale: float = 1.0
    base_model_source: dict | None = None
    sampler_max_distance: float | None = 0.5
    pad_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    bos_token_id: int | None = None
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        if self.attributes is None:
            self.attributes = PAPER_ATTRIBUTES
        if isinstance(self.attributes, list):  # the JSON form: [[attribute, [aspects]], ...] keeps the order
            self.attributes = {pair[0]: pair[1] for pair in self.attributes}
        if isinstance(self.attributes, dict):
            self.attributes = {name: list(aspects) if isinstance(aspects, (list, tuple)) else aspects
                               for name, aspects in self.attributes.items()}
        super().__post_init__(**kwargs)
        for sub_config in (self.encoder, self.decoder):
            drop_gguf_quantization(sub_config)  # GGUF backbones are de-quantised on load: saved weights are floats
        for name in ("pad_token_id", "eos_token_id", "bos_token_id"):
            if getattr(self, name) is None and self.decoder is not None:
                setattr(self, name, getattr(self.decoder, name, None))

    def to_dict(self):
        """Serialise; `attributes` becomes a list of `[attribute, aspects]` pairs so JSON key sorting keeps its order."""
        output = super().to_dict()
        output["attributes"] = [[name, list(aspects)] for name, aspects in self.attributes.items()]
        return output

    # ----- validation (run by @strict on creation, in name order) -----
    def validate_field_types(self):
        """Every declared field holds a value of its annotated type (numpy / 0-d tensor numbers become Python ones)."""
        check_declared_fields(self)

    def validate_attributes(self):
        """Attributes need >= 2 distinct, non-empty aspect names each."""
        if not isinstance(self.attributes, dict) or not self.attributes:
            raise ValueError(
                "`attributes` must be a non-empty dict attribute -> list of aspect names, e.g. "
                f"{PAPER_ATTRIBUTES}; got {self.attributes!r}."
            )
        for name, aspects in self.attributes.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"Attribute names must be non-empty strings; got {name!r}.")
            if not isinstance(aspects, (list, tuple)) or len(aspects) < 2:
                raise ValueError(
                    f"Attribute {name!r} needs at least 2 aspects (a list of names); got {aspects!r}."
                )
            if any(not isinstance(a, str) or not a for a in aspects):
                raise ValueError(f"Aspect names of attribute {name!r} must be non-empty strings; got {aspects!r}.")
            duplicates = sorted({a for a in aspects if list(aspects).count(a) > 1})
            if duplicates:
                raise ValueError(f"Attribute {name!r} lists the aspect(s) {duplicates} more than once: {aspects!r}.")

    def validate_miracle_settings(self):
        """Ranges and choices of the numeric and string settings."""
        if self.latent_size < 1 or self.head_hidden_size < 1:
            raise ValueError(f"`latent_size` and `head_hidden_size` must be >= 1; got {self.latent_size}, {self.head_hidden_size}.")
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"`pooling` must be one of {POOLING_MODES}; got {self.pooling!r}.")
        if self.sampler_prior not in SAMPLER_PRIORS:
            raise ValueError(f"`sampler_prior` must be one of {SAMPLER_PRIORS}; got {self.sampler_prior!r}.")
        if self.sampler_method not in SAMPLER_METHODS:
            raise ValueError(f"`sampler_method` must be one of {SAMPLER_METHODS}; got {self.sampler_method!r}.")
        for name in ("kl_weight", "kl_threshold", "classification_loss_weight", "distance_loss_weight",
                     "bow_loss_weight", "latent_guidance_scale", "latent_residual_scale", "sampler_rtol", "sampler_atol", "sampler_beta_min", "sampler_beta_max", "sampler_start_scale"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"`{name}` must be a finite number >= 0; got {value!r}.")
        if self.sampler_beta_max < self.sampler_beta_min:
            raise ValueError(
                f"`sampler_beta_max` ({self.sampler_beta_max}) must be >= `sampler_beta_min` ({self.sampler_beta_min})."
            )
        if self.latent_prefix_length < 1:
            raise ValueError(f"`latent_prefix_length` must be >= 1; got {self.latent_prefix_length}.")
        check_guidance_plausibility(self.latent_guidance_plausibility)
        layers = self.latent_residual_layers or []
        if any(isinstance(layer, bool) or not isinstance(layer, int) or layer < 0 for layer in layers):
            raise ValueError(f"`latent_residual_layers` must be a list of decoder block indices (ints >= 0); got {layers!r}.")
        if not (0 <= self.word_dropout < 1):
            raise ValueError(f"`word_dropout` must be in [0, 1); got {self.word_dropout}.")
        if self.kl_num_cycles < 1:
            raise ValueError(f"`kl_num_cycles` must be >= 1; got {self.kl_num_cycles}.")
        if not (0 <= self.kl_zero_ratio and 0 <= self.kl_ramp_ratio and self.kl_zero_ratio + self.kl_ramp_ratio <= 1):
            raise ValueError(
                "`kl_zero_ratio` and `kl_ramp_ratio` must be >= 0 with a sum <= 1; got "
                f"{self.kl_zero_ratio} and {self.kl_ramp_ratio}."
            )
        if self.sampler_method not in FIXED_STEP_METHODS and self.sampler_rtol == 0 and self.sampler_atol == 0:
            raise ValueError(
                f"`sampler_rtol` and `sampler_atol` cannot both be 0 with the adaptive method {self.sampler_method!r}: "
                "no step could ever meet the tolerance. Give one of them a value > 0 (default 1e-3), or use a "
                f"fixed-step method ({', '.join(FIXED_STEP_METHODS)}) with `sampler_step_size`."
            )
        if self.sampler_max_distance is not None and not (math.isfinite(self.sampler_max_distance) and self.sampler_max_distance > 0):
            raise ValueError(f"`sampler_max_distance` must be a finite number > 0 or None (no bound); got {self.sampler_max_distance!r}.")
        if self.sampler_step_size is not None and not self.sampler_step_size > 0:
            raise ValueError(f"`sampler_step_size` must be > 0 or None; got {self.sampler_step_size}.")
        if self.sampler_max_steps is not None and self.sampler_max_steps < 1:
            raise ValueError(f"`sampler_max_steps` must be >= 1 or None; got {self.sampler_max_steps}.")
        if self.base_model_source is not None and set(self.base_model_source) not in BASE_MODEL_FORMS:
            raise ValueError(
                "`base_model_source` must name the backbones ({'encoder': ..., 'decoder': ...[, 'decoder_gguf_file': ...]}) "
                f"or a saved MIRACLE model ({{'miracle': path}}); got {self.base_model_source!r}."
            )
        if not (self.add_latent_to_embeddings or self.use_latent_prefix):
            raise ValueError("At least one of `add_latent_to_embeddings` and `use_latent_prefix` must be True, "
                             "or the decoder never sees z.")

    # ----- attribute helpers -----
    @property
    def attribute_names(self) -> list[str]:
        """Attribute names in config order."""
        return list(self.attributes)

    def aspect_index(self, attribute: str, aspect: str | int) -> int:
        """Index of `aspect` within `attribute` (accepts a name or an in-range integer tag)."""
        if attribute not in self.attributes:
            raise ValueError(f"Unknown attribute {attribute!r}; valid attributes: {self.attribute_names}.")
        aspects = self.attributes[attribute]
        aspect = as_python_scalar(aspect)  # numpy / 0-d tensor indices
        if isinstance(aspect, bool):
            raise ValueError(f"Aspect of {attribute!r} must be one of {aspects} (or 0..{len(aspects) - 1}); got {aspect!r}.")
        if isinstance(aspect, int):
            if 0 <= aspect < len(aspects):
                return aspect
        elif aspect in aspects:
            return aspects.index(aspect)
        raise ValueError(f"Unknown aspect {aspect!r} for attribute {attribute!r}; valid aspects: {aspects}.")


__all__ = ["MiracleConfig", "PAPER_ATTRIBUTES"]
