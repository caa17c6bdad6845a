"""The batching engine's parts: the per-row streamer, per-row stopping, per-request ODE starts, the queue limit."""

import threading

import pytest
import torch

from modeling_miracle.serving.engine import BatchingEngine, EngineSettings, Job, RowLimits, RowStreamer, start_latents
from modeling_miracle.serving.protocol import APIError, ChatRequest

from .conftest import make_model


def test_row_streamer_reports_each_rows_text_and_stops_rows_at_eos_or_their_limit(gpt2_tokenizer):
    said = []
    eos = gpt2_tokenizer.eos_token_id
    hello, world, bang = (gpt2_tokenizer.encode(t)[0] for t in ("Hello", " world", "!"))
    streamer = RowStreamer(gpt2_tokenizer, lambda row, text: said.append((row, text)), limits=[5, 2], eos_token_ids={eos})
    streamer.put(torch.tensor([[1, 2], [3, 4]]))  # the prompt: not reported
    streamer.put(torch.tensor([hello, hello]))
    streamer.put(torch.tensor([world, world]))
    streamer.put(torch.tensor([eos, bang]))  # row 0 ends; row 1 is past its limit of 2
    streamer.put(torch.tensor([bang, bang]))
    streamer.end()
    assert said == [(0, "Hello"), (1, "Hello"), (0, " world"), (1, " world")]
    assert streamer.finish_reasons == ["stop", "length"]
    assert [streamer.text(0), streamer.text(1)] == ["Hello world", "Hello world"]


def test_row_streamer_holds_back_half_a_character(gpt2_tokenizer):
    pieces = gpt2_tokenizer.encode(" 🦒")
    assert len(pieces) > 1  # the emoji's bytes span several tokens
    said = []
    streamer = RowStreamer(gpt2_tokenizer, lambda row, text: said.append(text), limits=[10], eos_token_ids=set())
    streamer.put(torch.tensor([[0]]))
    for piece in pieces:
        streamer.put(torch.tensor([piece]))
    assert said == ["🦒"]


def test_row_limits_stop_rows_at_their_own_length_and_on_cancel():
    jobs = [Job(ChatRequest(messages=[]), print) for _ in range(3)]
    stopping = threading.Event()
    limits = RowLimits(prompt_length=4, limits=[2, 5, 5], jobs=jobs, stopping=stopping)
    ids = torch.zeros(3, 6, dtype=torch.long)  # 2 tokens written
    assert limits(ids, None).tolist() == [True, False, False]
    jobs[1].cancelled.set()
    assert limits(ids, None).tolist() == [True, True, False]
    stopping.set()
    assert limits(ids, None).tolist() == [True, True, True]


def test_start_latents_depend_on_the_rows_seed_only():
    model = make_model("gpt2")
    ids = torch.randint(1000, 2000, (3, 7))
    mask = torch.ones_like(ids)
    together = start_latents(model, ids, mask, [1, 2, 1], {})
    alone = start_latents(model, ids[1:2], mask[1:2], [2], {})
    torch.testing.assert_close(together[1:2], alone, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(together[0], together[1])
    mu, _ = model.encode_prior(ids, mask)
    torch.testing.assert_close(start_latents(model, ids, mask, [1, 2, 3], {"sampler_start_scale": 0.0}), mu)


def test_submit_refuses_beyond_the_queue_limit_and_after_stop(processor):
    engine = BatchingEngine(make_model("gpt2"), processor, EngineSettings(max_queue=2))  # not started: nothing is taken
    reports = []
    for _ in range(2):
        engine.submit(ChatRequest(messages=[{"role": "user", "content": "Hi"}]), lambda *r: reports.append(r))
    with pytest.raises(APIError, match="limit 2") as refused:
        engine.submit(ChatRequest(messages=[{"role": "user", "content": "Hi"}]), print)
    assert refused.value.status == 503
    engine.stop()
    assert [kind for kind, _ in reports] == ["error", "error"] and reports[0][1].status == 503
    with pytest.raises(APIError, match="shutting down"):
        engine.submit(ChatRequest(messages=[{"role": "user", "content": "Hi"}]), print)


def test_engine_settings_are_checked():
    with pytest.raises(ValueError, match="max_batch_size"):
        EngineSettings(max_batch_size=0)
