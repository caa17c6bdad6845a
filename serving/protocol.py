"""The OpenAI chat-completions protocol as MIRACLE speaks it: request checking, error objects, response and
stream-chunk bodies. No web framework here: the FastAPI app (`serving.app`) calls these."""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass, field

from ..conversation import normalize_conversation
from ..configuration.personality import Personality
from ..sampling import SAMPLER_FIELDS, SamplerSettings

# OpenAI fields a client may send that change nothing here.
IGNORED_FIELDS = ("user", "stream_options", "metadata", "store", "service_tier", "parallel_tool_calls")
STANDARD_FIELDS = ("model", "messages", "stream", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n",
                   "seed")
MIRACLE_FIELDS = ("personality", "attribute_weights", "use_ebm", "latent_guidance_scale",
                  "latent_guidance_plausibility", "top_k") + SAMPLER_FIELDS
KNOWN_FIELDS = STANDARD_FIELDS + MIRACLE_FIELDS + IGNORED_FIELDS


class APIError(Exception):
    """An error answered with the protocol's error object `{"error": {"message", "type", "param", "code"}}`."""

    TYPES = {400: "invalid_request_error", 404: "invalid_request_error", 413: "invalid_request_error",
             422: "invalid_request_error", 503: "server_overloaded", 500: "server_error"}

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.TYPES.get(self.status, "invalid_request_error"),
                          "param": self.param, "code": self.code}}


@dataclass
class Limits:
    """What one request may ask for (answers 413 / 422 beyond it)."""

    max_new_tokens: int = 256
    max_messages: int = 64
    max_body_bytes: int = 1_000_000


@dataclass
class ChatRequest:
    """One checked chat-completions request."""

    messages: list[dict]
    stream: bool = False
    max_new_tokens: int = 64
    personality: dict = field(default_factory=dict)
    attribute_weights: dict = field(default_factory=dict)
    seed: int = 0
    use_ebm: bool = True
    latent_guidance_scale: float | None = None
    latent_guidance_plausibility: float | None = None
    sampler: dict = field(default_factory=dict)
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    id: str = field(default_factory=lambda: "chatcmpl-" + secrets.token_hex(12))
    created: int = field(default_factory=lambda: int(time.time()))

    def batch_key(self) -> tuple:
        """Requests with equal keys can be decoded in one `generate` call (their other fields may differ)."""
        return (self.use_ebm, self.latent_guidance_scale, self.latent_guidance_plausibility,
                tuple(sorted(self.sampler.items())), self.do_sample, self.temperature, self.top_p, self.top_k)


def _number(body: dict, name: str, kind=float, low=None, high=None, default=None):
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise APIError(422, f"`{name}` must be {'an integer' if kind is int else 'a number'}; got {value!r}.", name)
    if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
        raise APIError(422, f"`{name}` must be between {low} and {high}; got {value!r}.", name)
    return kind(value)


def _mapping(body: dict, name: str) -> dict:
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise APIError(422, f"`{name}` must be an object attribute -> value, e.g. {{\"attitude\": \"optimistic\"}}; "
                            f"got {value!r}.", name)
    return value


def parse_chat_request(body, config, limits: Limits) -> ChatRequest:
    """Check a decoded JSON body against the protocol, the model's attributes and the server's limits.

    Raises [`APIError`]: 400 for a body that is not a chat request (not an object, no `messages`, malformed
    messages), 422 for values the model cannot take (unknown attribute or aspect, out-of-range options, unknown
    fields), 413 for too many messages.
    """
    if not isinstance(body, dict):
        raise APIError(400, "The request body must be a JSON object.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "`messages` is required: a non-empty list of {\"role\", \"content\"} objects ending with "
                            "a user message.", "messages")
    if len(messages) > limits.max_messages:
        raise APIError(413, f"{len(messages)} messages is over this server's limit of {limits.max_messages}.",
                       "messages", "too_many_messages")
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise APIError(400, "Each message must be an object with a string `content` (text only); got "
                                f"{message!r}.", "messages")
    try:
        messages = normalize_conversation([{"role": m.get("role"), "content": m["content"]} for m in messages])
    except (ValueError, TypeError) as error:
        raise APIError(400, str(error), "messages") from error
    unknown = sorted(set(body) - set(KNOWN_FIELDS))
    if unknown:
        raise APIError(422, f"Unknown field(s) {unknown}; MIRACLE's fields (pass them with the openai client's "
                            f"`extra_body=`): {list(MIRACLE_FIELDS)}.", unknown[0])
    if _number(body, "n", int, 1, 1, 1) != 1:
        raise APIError(422, "`n` must be 1.", "n")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    max_tokens = _number({"max_tokens": max_tokens}, "max_tokens", int, 1, limits.max_new_tokens, 64)
    temperature = _number(body, "temperature", float, 0.0, 2.0)
    top_p = _number(body, "top_p", float, 0.0, 1.0)
    top_k = _number(body, "top_k", int, 0, 10_000, 0)
    do_sample = (temperature is not None and temperature > 0) or (temperature is None and (top_p or 1.0) < 1.0)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise APIError(422, f"`stream` must be true or false; got {stream!r}.", "stream")
    use_ebm = body.get("use_ebm", True)
    if not isinstance(use_ebm, bool):
        raise APIError(422, f"`use_ebm` must be true or false; got {use_ebm!r}.", "use_ebm")
    personality, weights = _mapping(body, "personality"), _mapping(body, "attribute_weights")
    sampler = {name: body[name] for name in SAMPLER_FIELDS if body.get(name) is not None}
    try:
        Personality.resolve(config, personality, weights, 1)
    except (ValueError, TypeError) as error:
        raise APIError(422, str(error), "personality", "unknown_personality") from error
    try:
        SamplerSettings.from_config(config, **sampler)
    except (ValueError, TypeError) as error:
        raise APIError(422, str(error), next(iter(sampler), None)) from error
    scale = _number(body, "latent_guidance_scale", float, 0.0, 100.0)
    if scale and not use_ebm:
        raise APIError(422, "`latent_guidance_scale` needs `use_ebm: true` (guidance moves z with the EBM ODE).",
                       "latent_guidance_scale")
    seed = _number(body, "seed", int, 0, 2**63 - 1)
    return ChatRequest(
        messages=messages, stream=stream, max_new_tokens=max_tokens,
        personality={a: config.attributes[a][config.aspect_index(a, v)] for a, v in personality.items()},
        attribute_weights={a: float(w) for a, w in weights.items()},
        seed=secrets.randbits(63) if seed is None else seed, use_ebm=use_ebm,
        latent_guidance_scale=scale if use_ebm else 0.0,
        latent_guidance_plausibility=_number(body, "latent_guidance_plausibility", float, 0.0, 1.0),
        sampler=sampler, do_sample=do_sample, temperature=temperature if do_sample and temperature else 1.0,
        top_p=top_p if top_p is not None else 1.0, top_k=top_k,
    )


def completion_body(request: ChatRequest, model_id: str, result) -> dict:
    """The `chat.completion` object of a finished request (`result`: an engine `RowResult`)."""
    return {
        "id": request.id, "object": "chat.completion", "created": request.created, "model": model_id,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                     "finish_reason": result.finish_reason}],
        "usage": usage(result),
        "personality": request.personality,
        "latent_diagnostics": result.latent_diagnostics,
    }


def usage(result) -> dict:
    return {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens}


def chunk_body(request: ChatRequest, model_id: str, delta: dict, finish_reason: str | None = None, **extra) -> dict:
    """One `chat.completion.chunk` of a stream."""
    return {"id": request.id, "object": "chat.completion.chunk", "created": request.created, "model": model_id,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}], **extra}


def models_body(model_id: str, created: int) -> dict:
    return {"object": "list", "data": [{"id": model_id, "object": "model", "created": created, "owned_by": "miracle"}]}
