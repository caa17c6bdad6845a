"""Personalized latent sampling (paper section 3.4, appendix B): a product-of-experts energy over the attribute
heads, and an ODE (torchdiffeq) that moves the context's prior sample towards low energy."""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields

import torch
from torchdiffeq import odeint

from .configuration.configuration_miracle import FIXED_STEP_METHODS
from .configuration.personality import Personality
from .configuration.validation import check_value, declared_field_types

SAMPLER_FIELDS = (
    "sampler_method", "sampler_rtol", "sampler_atol", "sampler_step_size", "sampler_max_steps",
    "sampler_beta_min", "sampler_beta_max", "sampler_prior", "sampler_keep_prior_term", "sampler_start_scale",
    "sampler_max_distance",
)


@dataclass
class SamplerSettings:
    """ODE sampler settings; defaults come from the model config, any of them can be overridden per call."""

    method: str
    rtol: float
    atol: float
    step_size: float | None
    max_steps: int | None
    beta_min: float
    beta_max: float
    prior: str
    keep_prior_term: bool
    start_scale: float
    max_distance: float | None

    @classmethod
    def from_config(cls, config, **overrides) -> "SamplerSettings":
        unknown = sorted(set(overrides) - set(SAMPLER_FIELDS))
        if unknown:
            raise ValueError(f"Unknown sampler option(s) {unknown}; valid options: {list(SAMPLER_FIELDS)}.")
        hints = declared_field_types(type(config))
        overrides = {name: check_value(name, value, hints[name]) if name in hints else value
                     for name, value in overrides.items()}
        values = {name: overrides.get(name, getattr(config, name)) for name in SAMPLER_FIELDS}
        if overrides:  # the config's own checks, on a copy of the config holding the overrides
            overridden = copy.copy(config)
            overridden.__dict__.update(overrides)
            overridden.validate_miracle_settings()
        return cls(**{f.name: values["sampler_" + f.name] for f in fields(cls)})

    def solver_options(self) -> dict:
        if self.method in FIXED_STEP_METHODS:
            return {"step_size": self.step_size} if self.step_size is not None else {}
        return {"max_num_steps": self.max_steps} if self.max_steps is not None else {}


def log_probability_of_personality(heads, latent: torch.Tensor, personality: Personality) -> torch.Tensor:
    """-E(P|z) per row, over the attributes named: lambda_i * log p_i(a_i|z) for a weight lambda_i >= 0 (eq. 8/13),
    and |lambda_i| * log(1 - p_i(a_i|z)) for a negative one.

    Steering away uses the probability of *not* a_i: like steering towards an aspect, its push fades once the goal
    is reached (p -> 0), where `lambda * log p` with lambda < 0 would push z on without end (on the shipped model a
    weight of -1 took z from norm ~3.5 to ~28, where the decoder writes garbage). With two aspects, a weight of -w
    on one is a weight of w on the other.
    """
    total = latent.new_zeros(latent.shape[0])
    for i, logits in enumerate(heads(latent).values()):
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        index = personality.aspects[:, i : i + 1].clamp(min=0)
        chosen = log_probs.gather(1, index).squeeze(1)
        others = torch.logsumexp(log_probs.scatter(1, index, float("-inf")), dim=-1)  # log(1 - p(a_i)), stable
        weight = personality.weights[:, i]
        term = torch.where(weight >= 0, weight * chosen, -weight * others)
        total = total + torch.where(personality.named[:, i], term, torch.zeros_like(term))
    return total


def trust_radius(settings: SamplerSettings, prior_logvar: torch.Tensor | None) -> torch.Tensor | None:
    """Per row, how far the ODE may move z: `max_distance * ||sigma||` of the context's prior (None: unbounded)."""
    if settings.max_distance is None or prior_logvar is None:
        return None
    return settings.max_distance * prior_logvar.float().mul(0.5).exp().norm(dim=-1)


class PersonalityODE(torch.nn.Module):
    """dz/dt = -1/2 beta(t) grad_z [-E(P|z)] (eq. 20), optionally with the prior terms of eq. 19; t runs 1 -> 0."""

    def __init__(self, heads, personality: Personality, settings: SamplerSettings, prior_mu=None, prior_logvar=None,
                 radius=None):
        super().__init__()
        self.heads, self.personality, self.settings = heads, personality, settings
        self.prior_mu, self.prior_logvar = prior_mu, prior_logvar
        self.radius = radius
        self.evaluations = 0

    def bounded(self, velocity: torch.Tensor) -> torch.Tensor:
        """`velocity` with its norm capped at the trust radius per unit of t: over t from 1 to 0, z then travels at
        most the radius from its start, whatever the weights (a weight of 1e6 only means full speed, so the solver's
        steps stay as large as for small weights)."""
        if self.radius is None:
            return velocity
        speed = velocity.norm(dim=-1, keepdim=True)
        return velocity * (self.radius.unsqueeze(-1) / speed.clamp(min=1e-12)).clamp(max=1.0)

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return self.settings.beta_min + t * (self.settings.beta_max - self.settings.beta_min)

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        self.evaluations += 1
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            log_p = log_probability_of_personality(self.heads, z, self.personality)
            (score,) = torch.autograd.grad(log_p.sum(), z)
        drift = score
        if self.settings.keep_prior_term:
            # eq. 19, line 3: z + grad log p(P|z) + grad log p(z|C), with grad log p(z|C) = -(z - mu') / sigma'^2.
            drift = drift + z.detach() - (z.detach() - self.prior_mu) / self.prior_logvar.exp()
        if not torch.isfinite(t):
            raise FloatingPointError(
                "The ODE solver's time became non-finite: its step size underflowed. Loosen `sampler_rtol` / "
                "`sampler_atol`, lower large `attribute_weights` or `sampler_beta_max`, or use a fixed-step method "
                "with `sampler_step_size`."
            )
        if not torch.isfinite(drift).all():
            raise FloatingPointError(
                f"The ODE drift became non-finite at t={float(t):.4f}; try a smaller `sampler_beta_max`, tighter "
                "tolerances, or a fixed-step method with `sampler_step_size`."
            )
        return self.bounded(-0.5 * self.beta(t) * drift)


def solve_personality_ode(heads, start: torch.Tensor, personality: Personality, settings: SamplerSettings,
                          prior_mu=None, prior_logvar=None) -> tuple[torch.Tensor, int]:
    """Integrate the personality ODE from t=1 to t=0 starting at `start`; returns (z(0), function evaluations).

    The solve runs in float32 whatever the model's dtype or an enclosing autocast: the adaptive solver's error
    control needs float32 drifts, so half-precision heads are evaluated through a float32 copy (they are small).
    With `settings.max_distance` and the prior given, z stays within `max_distance * ||sigma||` of `start` (see
    [`PersonalityODE.bounded`]), whatever the weights, step sizes or solver.
    """
    if any(p.dtype != torch.float32 for p in heads.parameters()):
        heads = copy.deepcopy(heads).float()
    radius = trust_radius(settings, prior_logvar)
    ode = PersonalityODE(heads, personality, settings, prior_mu, prior_logvar, radius=radius)
    times = torch.tensor([1.0, 0.0], device=start.device, dtype=torch.float32)
    try:
        with torch.autocast(start.device.type, enabled=False):
            trajectory = odeint(ode, start.float(), times, rtol=settings.rtol, atol=settings.atol,
                                method=settings.method, options=settings.solver_options())
    except AssertionError as error:  # torchdiffeq signals a step cap / underflow with assertions
        raise RuntimeError(
            f"The ODE solver stopped: {error}. Raise `sampler_max_steps`, loosen the tolerances, or lower large "
            "`attribute_weights` / `sampler_beta_max` (they make the ODE stiff)."
        ) from error
    latent = trajectory[-1]
    if radius is not None:  # a solver's step mixes stage speeds with weights summing past 1: back onto the edge
        offset = latent - start.float()
        distance = offset.norm(dim=-1, keepdim=True)
        latent = start.float() + offset * (radius.unsqueeze(-1) / distance.clamp(min=1e-12)).clamp(max=1.0)
    latent = latent.to(start.dtype)
    if not torch.isfinite(latent).all():
        raise FloatingPointError("ODE sampling produced a non-finite latent; check the model's heads and sampler settings.")
    return latent, ode.evaluations
