"""`BatchingEngine`: decodes concurrent chat requests together, each row with its own personality.

Requests that arrive within `batch_wait_s` of the first waiting one (and ask for the same decoding options) share one
`model.generate` call, up to `max_batch_size` rows; at most `max_queue` requests wait, more are refused (503). One
worker thread owns the model. Each request reports back through a callback, from that thread:
`("delta", text)` while its reply is written, then `("done", RowResult)` or `("error", APIError)`.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from ..sampling import SamplerSettings
from .protocol import APIError, ChatRequest

logger = logging.getLogger(__name__)


@dataclass
class EngineSettings:
    """How requests are batched."""

    max_batch_size: int = 8
    batch_wait_s: float = 0.01
    max_queue: int = 64

    def __post_init__(self):
        if self.max_batch_size < 1 or self.max_queue < 1 or not (self.batch_wait_s >= 0):
            raise ValueError(f"max_batch_size and max_queue must be >= 1 and batch_wait_s >= 0; got {self}.")


@dataclass
class RowResult:
    """A finished reply."""

    text: str
    finish_reason: str  # "stop" (end of sequence) or "length" (max_tokens reached)
    prompt_tokens: int
    completion_tokens: int
    latent_diagnostics: dict = field(default_factory=dict)


@dataclass
class Job:
    """One request inside the engine."""

    request: ChatRequest
    report: object  # callable(kind, payload)
    cancelled: threading.Event = field(default_factory=threading.Event)
    arrived: float = field(default_factory=time.monotonic)


class RowStreamer(BaseStreamer):
    """A transformers streamer for a batch whose rows belong to different requests: it keeps each row's new tokens
    and reports each row's text as it grows (whole characters only, surrounding whitespace held back)."""

    def __init__(self, tokenizer, on_text, limits: list[int], eos_token_ids: set[int]):
        self.tokenizer, self.on_text, self.limits, self.eos = tokenizer, on_text, limits, eos_token_ids
        self.tokens = [[] for _ in limits]
        self.finish_reasons = [None] * len(limits)
        self.sent = [""] * len(limits)
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # `generate` hands over the prompt first
            self.prompt_seen = True
            return
        for row, token in enumerate(value.reshape(len(self.limits), -1)[:, -1].tolist()):
            if self.finish_reasons[row] is not None:
                continue
            if token in self.eos:
                self.finish_reasons[row] = "stop"
                continue
            self.tokens[row].append(token)
            if len(self.tokens[row]) >= self.limits[row]:
                self.finish_reasons[row] = "length"
            self._report(row)

    def end(self) -> None:
        for row, reason in enumerate(self.finish_reasons):
            if reason is None:
                self.finish_reasons[row] = "length"

    def text(self, row: int) -> str:
        return self.tokenizer.decode(self.tokens[row], skip_special_tokens=True).strip()

    def _report(self, row: int) -> None:
        text = self.text(row)
        if text.endswith("\ufffd") or not text.startswith(self.sent[row]) or text == self.sent[row]:
            return  # an unfinished multi-byte character, or nothing new
        delta, self.sent[row] = text[len(self.sent[row]):], text
        self.on_text(row, delta)


class RowLimits(StoppingCriteria):
    """Stops each row at its own `max_tokens`, and every row of a cancelled request at once."""

    def __init__(self, prompt_length: int, limits: list[int], jobs: list[Job], stopping: threading.Event):
        self.prompt_length, self.limits, self.jobs, self.stopping = prompt_length, limits, jobs, stopping

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        written = input_ids.shape[1] - self.prompt_length
        done = [written >= limit or job.cancelled.is_set() or self.stopping.is_set()
                for limit, job in zip(self.limits, self.jobs)]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class BatchingEngine:
    """Owns the model in one worker thread and decodes waiting requests in batches (see the module docstring)."""

    def __init__(self, model, processor, settings: EngineSettings | None = None):
        self.model, self.processor = model, processor
        self.settings = settings or EngineSettings()
        self.batch_sizes: list[int] = []  # one entry per `generate` call, for tests and the load benchmark
        self._pending: deque[Job] = deque()
        self._condition = threading.Condition()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "BatchingEngine":
        self._stopping.clear()
        self._thread = threading.Thread(target=self._work, name="miracle-batching", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 60.0) -> None:
        """Refuse new requests, cancel the waiting ones and the running batch, and wait for the worker."""
        with self._condition:
            self._stopping.set()
            waiting, self._pending = list(self._pending), deque()
            self._condition.notify_all()
        for job in waiting:
            job.report("error", APIError(503, "The server is shutting down.", code="shutting_down"))
        if self._thread is not None:
            self._thread.join(timeout)

    # ------------------------------------------------------------------ requests
    def submit(self, request: ChatRequest, report) -> Job:
        """Queue a request; raises APIError 503 when the queue is full or the engine is stopping."""
        job = Job(request, report)
        with self._condition:
            if self._stopping.is_set():
                raise APIError(503, "The server is shutting down.", code="shutting_down")
            if len(self._pending) >= self.settings.max_queue:
                raise APIError(503, f"The server is busy: {len(self._pending)} requests are waiting (limit "
                                    f"{self.settings.max_queue}); retry later.", code="queue_full")
            self._pending.append(job)
            self._condition.notify_all()
        return job

    @staticmethod
    def cancel(job: Job) -> None:
        """Stop working on a request (its client went away); a no-op once it is done."""
        job.cancelled.set()

    def prompt_limit(self, max_new_tokens: int) -> int:
        """The decoder prompt limit for replies of `max_new_tokens`: the processor's, lowered to leave room for them
        in the decoder's positions."""
        positions = getattr(self.model.config.decoder, "max_position_embeddings", None)
        limit = self.processor.max_prompt_length
        return limit if positions is None else min(limit, int(positions) - int(max_new_tokens))

    def check_fits(self, request: ChatRequest) -> None:
        """APIError 413 when the newest user turn alone is over the model's limits."""
        processor = self._processor_for(request.max_new_tokens)
        try:
            processor.truncate_history(request.messages)
        except ValueError as error:
            raise APIError(413, str(error), "messages", "context_length_exceeded") from error

    def _processor_for(self, max_new_tokens: int):
        limit = self.prompt_limit(max_new_tokens)
        if limit < 1:
            raise APIError(422, f"max_tokens={max_new_tokens} leaves no room for a prompt in the decoder.", "max_tokens")
        if limit == self.processor.max_prompt_length:
            return self.processor
        processor = copy.copy(self.processor)  # shares the tokenizers
        processor.max_prompt_length = limit
        return processor

    # ------------------------------------------------------------------ worker
    def _next_batch(self) -> list[Job]:
        """Wait for a request, give others with the same options `batch_wait_s` to join, and take up to
        `max_batch_size` of them (oldest first)."""
        settings = self.settings
        with self._condition:
            while not self._pending and not self._stopping.is_set():
                self._condition.wait()
            if self._stopping.is_set():
                return []
            key = self._pending[0].request.batch_key()
            deadline = self._pending[0].arrived + settings.batch_wait_s
            while (sum(j.request.batch_key() == key for j in self._pending) < settings.max_batch_size
                   and time.monotonic() < deadline and not self._stopping.is_set()):
                self._condition.wait(max(0.0, deadline - time.monotonic()))
            batch, rest = [], deque()
            for job in self._pending:
                if job.request.batch_key() == key and len(batch) < settings.max_batch_size:
                    batch.append(job)
                else:
                    rest.append(job)
            self._pending = rest
        return [job for job in batch if not job.cancelled.is_set()]

    def _work(self) -> None:
        while not self._stopping.is_set():
            jobs = self._next_batch()
            if not jobs:
                continue
            try:
                self._decode(jobs)
            except Exception as error:  # one bad batch must not take the server down
                logger.exception("A batch of %d requests failed", len(jobs))
                for job in jobs:
                    job.report("error", APIError(500, f"Generation failed: {type(error).__name__}: {error}"))

    @torch.no_grad()
    def _decode(self, jobs: list[Job]) -> None:
        model, requests = self.model, [job.request for job in jobs]
        self.batch_sizes.append(len(jobs))
        first = requests[0]  # the batch key makes these options equal across the batch
        limits = [r.max_new_tokens for r in requests]
        inputs = self._processor_for(max(limits))([r.messages for r in requests], return_tensors="pt")
        inputs = {name: tensor.to(model.device) for name, tensor in inputs.items()}
        personality = [r.personality for r in requests]
        weights = [r.attribute_weights or None for r in requests]
        # With a noisy start each row draws its own (seeded) one; at the prior mean `generate` starts there itself,
        # so the prior is not encoded twice.
        noisy = SamplerSettings.from_config(model.config, **first.sampler).start_scale > 0
        start = start_latents(model, inputs["prior_input_ids"], inputs["prior_attention_mask"],
                              [r.seed for r in requests], first.sampler) if noisy else None
        options = {"max_new_tokens": max(limits), "do_sample": first.do_sample}
        if first.do_sample:
            options.update(temperature=first.temperature, top_p=first.top_p, top_k=first.top_k)
        # Guidance (its default, the ablation) is decided by `generate` itself, as for every other caller.
        options.update(personality=personality, attribute_weights=weights, use_ebm=first.use_ebm, start_latent=start,
                       latent_guidance_scale=first.latent_guidance_scale,
                       latent_guidance_plausibility=first.latent_guidance_plausibility, **first.sampler)
        tokenizer = self.processor.decoder_tokenizer
        eos = model.generation_config.eos_token_id if model.generation_config.eos_token_id is not None else tokenizer.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos])
        streamer = RowStreamer(tokenizer, lambda row, text: jobs[row].report("delta", text), limits, eos)
        prompt_length = inputs["input_ids"].shape[1]
        output = model.generate(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
            prior_input_ids=inputs["prior_input_ids"], prior_attention_mask=inputs["prior_attention_mask"],
            streamer=streamer, pad_token_id=tokenizer.pad_token_id, return_latent_sample=True,
            stopping_criteria=StoppingCriteriaList([RowLimits(prompt_length, limits, jobs, self._stopping)]), **options)
        diagnostics = output.latent_sample.diagnostics(model.config.attributes)
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        for row, job in enumerate(jobs):
            if job.cancelled.is_set() and streamer.finish_reasons[row] is None:
                continue
            job.report("done", RowResult(
                text=streamer.text(row), finish_reason=streamer.finish_reasons[row] or "length",
                prompt_tokens=int(prompt_tokens[row]), completion_tokens=len(streamer.tokens[row]),
                latent_diagnostics=diagnostics[row],
            ))


def start_latents(model, prior_input_ids, prior_attention_mask, seeds: list[int], sampler: dict) -> torch.Tensor:
    """Each row's ODE start drawn from its context's prior with its own seed, so that a request's reply does not
    depend on the other requests in its batch."""
    settings = SamplerSettings.from_config(model.config, **sampler)
    mu, logvar = model.encode_prior(prior_input_ids, prior_attention_mask)
    if settings.prior == "standard":
        mu, logvar = torch.zeros_like(mu), torch.zeros_like(logvar)
    if settings.start_scale <= 0:
        return mu
    noise = torch.stack([torch.randn(mu.shape[1], generator=torch.Generator().manual_seed(seed)) for seed in seeds])
    return mu + (0.5 * logvar).exp() * settings.start_scale * noise.to(mu.device, mu.dtype)


__all__ = ["BatchingEngine", "EngineSettings", "RowResult", "RowStreamer", "start_latents"]
