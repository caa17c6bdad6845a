"""Chat backends that write the dialogues: any OpenAI-compatible chat-completions server (TGI, vLLM, llama.cpp
server, hosted APIs) through `huggingface_hub.InferenceClient`, or a local transformers causal LM."""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field


class RequestFailed(RuntimeError):
    """One request failed for good (retries used up, or a non-retryable client error); the run goes on."""


class FatalBackendError(RuntimeError):
    """The backend cannot serve any request (wrong key, wrong URL or model): the run stops."""


@dataclass
class SamplingSettings:
    """Sampling settings passed to every request (None = the backend's default)."""

    temperature: float | None = 1.0
    top_p: float | None = None
    max_tokens: int | None = 512
    extra: dict = field(default_factory=dict)  # any other request field (frequency_penalty, stop, min_p, ...)


class ChatBackend:
    """What the collector needs from a backend: `chat(messages, seed) -> str`, how many requests may run at once,
    and a description for the data card (never a secret)."""

    max_concurrency: int = 1

    def chat(self, messages: list[dict], seed: int | None = None) -> str:
        raise NotImplementedError

    def describe(self) -> dict:
        raise NotImplementedError


RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def _status(error: BaseException) -> int | None:
    return getattr(getattr(error, "response", None), "status_code", None)


def _retry_after(error: BaseException) -> float | None:
    headers = getattr(getattr(error, "response", None), "headers", None) or {}
    try:
        return float(headers.get("retry-after"))
    except (TypeError, ValueError):
        return None


def _is_transport_error(error: BaseException) -> bool:
    return any(c.__name__ in ("TransportError", "TimeoutError", "ConnectionError") for c in type(error).__mro__)


def _is_timeout(error: BaseException) -> bool:
    return isinstance(error, TimeoutError) or any("Timeout" in c.__name__ for c in type(error).__mro__)


class OpenAICompatibleBackend(ChatBackend):
    """A chat-completions server at `base_url` (e.g. `http://localhost:8080/v1`, `https://api.openai.com/v1`).

    The API key is read from the environment variable `api_key_env` and only ever sent to the server. Requests
    that fail with 408/409/425/429/5xx, time out or lose the connection are retried up to `max_retries` times after
    `backoff * 2**attempt` seconds (or the server's `Retry-After`), at most `max_backoff`; 401/403 (key) and 404
    (URL or model) stop the run with `FatalBackendError`; other client errors fail the one request.
    """

    def __init__(self, base_url: str, model: str | None = None, api_key_env: str | None = "OPENAI_API_KEY",
                 sampling: SamplingSettings | None = None, concurrency: int = 4, timeout: float = 120.0,
                 max_retries: int = 5, backoff: float = 1.0, max_backoff: float = 60.0):
        from huggingface_hub import InferenceClient

        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1; got {concurrency}.")
        self.base_url, self.model, self.api_key_env = base_url, model, api_key_env
        self.sampling = sampling or SamplingSettings()
        self.max_concurrency, self.timeout = concurrency, timeout
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff, max_backoff
        offline = next((name for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
                        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")), None)
        if offline:
            # huggingface_hub's client refuses every request in offline mode, even to a server on this machine.
            raise FatalBackendError(
                f"{offline} is set, and in offline mode the chat client refuses every request (even to {base_url}). "
                f"Run this command with {offline}=0 (e.g. `{offline}=0 miracle collect ...`), or use `--backend local`."
            )
        api_key = os.environ.get(api_key_env) if api_key_env else None
        self._has_key = bool(api_key)
        # Without a key, "EMPTY" (what local OpenAI-compatible servers expect from the OpenAI client) rather than None:
        # with None, huggingface_hub would send the user's saved Hugging Face token to this server.
        self._client = InferenceClient(base_url=base_url, api_key=api_key or "EMPTY", timeout=timeout)
        self._lock = threading.Lock()
        self.retries: Counter = Counter()  # reason ("HTTP 429", "timeout", "connection") -> retries made
        self.requests_sent = 0
        self.answered = False  # has the server answered a request yet? Until it has, a failed connection stops the run
        self._jitter = random.Random(0)

    def _count(self, retry_reason: str | None = None) -> None:
        """One request sent (no reason) or one retry scheduled (its reason)."""
        with self._lock:
            if retry_reason is None:
                self.requests_sent += 1
            else:
                self.retries[retry_reason] += 1

    def _delay(self, attempt: int, error: BaseException) -> float:
        delay = _retry_after(error)
        if delay is None:
            delay = self.backoff * 2**attempt
            with self._lock:
                delay *= 1 + 0.1 * self._jitter.random()
        return min(delay, self.max_backoff)

    def chat(self, messages: list[dict], seed: int | None = None) -> str:
        s = self.sampling
        for attempt in range(self.max_retries + 1):
            self._count()
            try:
                output = self._client.chat_completion(
                    messages, model=self.model, temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens,
                    seed=seed, extra_body=s.extra or None,
                )
                self.answered = True
                return output.choices[0].message.content or ""
            except Exception as error:  # noqa: BLE001 - sorted below into retry / fail / stop
                status = _status(error)
                if status in (401, 403):
                    key = f"the key in ${self.api_key_env}" if self._has_key else f"no key (${self.api_key_env} is not set)"
                    raise FatalBackendError(f"{self.base_url} refused the request with HTTP {status}: check the API key "
                                            f"(sent {key}).") from None
                if status == 404:
                    raise FatalBackendError(f"{self.base_url} answered HTTP 404: check --base-url (it should end where "
                                            f"/chat/completions is appended, e.g. .../v1) and --model {self.model!r}.") from None
                if status is not None and status not in RETRYABLE_STATUS:
                    raise RequestFailed(f"HTTP {status}: {error}") from None
                if status is None and not _is_transport_error(error):
                    raise RequestFailed(f"{type(error).__name__}: {error}") from None
                reason = f"HTTP {status}" if status is not None else ("timeout" if _is_timeout(error) else "connection")
                if reason == "connection" and not self.answered:
                    raise FatalBackendError(
                        f"cannot connect to {self.base_url} ({type(error).__name__}: {error}). Check that the server "
                        "is running and listening there, and --base-url (it should end where /chat/completions is "
                        "appended, e.g. http://localhost:8080/v1)."
                    ) from None
                if attempt == self.max_retries:
                    raise RequestFailed(f"{reason} after {self.max_retries} retries to {self.base_url}: "
                                        f"{type(error).__name__}: {error}") from None
                self._count(reason)
                time.sleep(self._delay(attempt, error))
        raise AssertionError("unreachable")

    def describe(self) -> dict:
        return {"backend": "openai-compatible", "base_url": self.base_url, "model": self.model,
                "api_key_env": self.api_key_env, "sampling": _sampling_dict(self.sampling)}


def _sampling_dict(sampling: SamplingSettings) -> dict:
    return {"temperature": sampling.temperature, "top_p": sampling.top_p, "max_tokens": sampling.max_tokens, **sampling.extra}


class TransformersBackend(ChatBackend):
    """A local causal LM with a chat template (default: the packaged offline SmolLM2-135M-Instruct).

    `prefill` is appended after the chat template's generation prompt and kept at the start of the reply: seeding
    the first `[PersonA]:` helps small models keep the format. Requests run one at a time.
    """

    def __init__(self, model_name_or_path: str | None = None, sampling: SamplingSettings | None = None,
                 prefill: str = "[PersonA]:", device: str | None = None, model=None, tokenizer=None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if model is None:
            if model_name_or_path is None:
                from ..backbones import smollm2_folder

                model_name_or_path = str(smollm2_folder())
            model = AutoModelForCausalLM.from_pretrained(model_name_or_path)
            tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
        if tokenizer is None:
            raise ValueError("Pass the tokenizer with the model.")
        self.model = model.eval().to(device) if device else model.eval()
        self.tokenizer, self.prefill = tokenizer, prefill
        self.name = model_name_or_path or getattr(model.config, "_name_or_path", type(model).__name__)
        self.sampling = sampling or SamplingSettings()
        self._lock = threading.Lock()

    def chat(self, messages: list[dict], seed: int | None = None) -> str:
        import torch

        s = self.sampling
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + self.prefill
        inputs = self.tokenizer(text, return_tensors="pt", add_special_tokens=False).to(self.model.device)
        sample = bool(s.temperature) and s.temperature > 0
        kwargs = {"do_sample": sample, "max_new_tokens": s.max_tokens or 512, **s.extra}
        if sample:
            kwargs["temperature"] = s.temperature
            if s.top_p is not None:
                kwargs["top_p"] = s.top_p
        if self.tokenizer.pad_token_id is None:
            kwargs["pad_token_id"] = self.tokenizer.eos_token_id
        with self._lock, torch.no_grad():
            if seed is not None:
                torch.manual_seed(seed)
            output = self.model.generate(**inputs, **kwargs)
        return self.prefill + self.tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

    def describe(self) -> dict:
        return {"backend": "transformers", "model": str(self.name), "prefill": self.prefill,
                "sampling": _sampling_dict(self.sampling)}
