"""`miracle serve`'s API against a real uvicorn server on 127.0.0.1, with a tiny model: the official `openai`
client (plain and streaming), raw HTTP for every error case, batching of concurrent requests, shutdown."""

import copy
import json
import threading

import httpx
import openai
import pytest

from modeling_miracle import MiracleProcessor
from modeling_miracle.serving.app import create_app
from modeling_miracle.serving.engine import EngineSettings
from modeling_miracle.serving.protocol import Limits
from modeling_miracle.serving.server import BackgroundServer

MODEL_ID = "tiny-miracle"
# Fixed-step ODE: the latent of a row does not depend on the step sizes an adaptive solver picks for its batch.
FIXED_STEPS = {"sampler_method": "rk4", "sampler_step_size": 0.1}


@pytest.fixture(scope="module")
def tiny_processor(encoder_tokenizer, gpt2_tokenizer):
    return MiracleProcessor(copy.deepcopy(encoder_tokenizer), copy.deepcopy(gpt2_tokenizer), max_encoder_length=64,
                            max_prompt_length=96)


@pytest.fixture(scope="module")
def server(separated_model, tiny_processor):
    app = create_app(separated_model, tiny_processor, MODEL_ID, Limits(max_new_tokens=32, max_messages=8,
                                                                          max_body_bytes=20_000),
                     EngineSettings(max_batch_size=4, batch_wait_s=0.3, max_queue=8))
    with BackgroundServer(app) as running:
        running.engine = app.state.engine
        yield running


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def ask(client, personality, content="What do you do on weekends?", **options):
    extra = {"personality": personality, "seed": 7, **FIXED_STEPS, **options.pop("extra", {})}
    return client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": content}],
                                          max_tokens=options.pop("max_tokens", 6), extra_body=extra, **options)


def test_models_lists_the_served_model(client):
    assert [m.id for m in client.models.list().data] == [MODEL_ID]


def test_openai_client_gets_a_personalized_completion(client):
    reply = ask(client, {"attitude": "optimistic", "language_style": "lyrical"}, max_tokens=5)
    choice = reply.choices[0]
    assert reply.object == "chat.completion" and choice.message.role == "assistant"
    assert choice.message.content.strip() and choice.finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens <= 5 and reply.usage.prompt_tokens > 0
    extra = reply.model_extra
    assert extra["personality"] == {"attitude": "optimistic", "language_style": "lyrical"}
    diagnostics = extra["latent_diagnostics"]["attitude"]
    assert diagnostics["aspect"] == "optimistic" and diagnostics["after"] > diagnostics["before"]
    # The same request again (same seed) gives the same reply; another personality moves the latent elsewhere.
    assert ask(client, {"attitude": "optimistic", "language_style": "lyrical"}, max_tokens=5).choices[0].message.content \
        == choice.message.content
    other = ask(client, {"attitude": "pessimistic"}, max_tokens=5).model_extra["latent_diagnostics"]
    assert set(other) == {"attitude"} and other["attitude"]["aspect"] == "pessimistic"


def test_streaming_sends_the_reply_in_chunks_that_add_up(client):
    personality = {"mental_characteristics": "critical"}
    whole = ask(client, personality, max_tokens=8).choices[0].message.content
    chunks = list(ask(client, personality, max_tokens=8, stream=True))
    assert all(c.object == "chat.completion.chunk" for c in chunks) and len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert len(pieces) > 1 and "".join(pieces) == whole
    assert chunks[-1].model_extra["latent_diagnostics"]["mental_characteristics"]["aspect"] == "critical"


def test_concurrent_requests_share_a_batch_and_equal_requests_one_at_a_time(client, server):
    personalities = [{"attitude": "optimistic", "language_style": "lyrical"}, {"attitude": "pessimistic"}]
    contents = ["What do you do on weekends?", "Do you like rainy days?"]
    alone = [ask(client, p, c, max_tokens=8) for p, c in zip(personalities, contents)]
    before = len(server.engine.batch_sizes)
    together = [None, None]

    def send(i):
        together[i] = ask(client, personalities[i], contents[i], max_tokens=8)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert server.engine.batch_sizes[before:] == [2]  # one generate call for both
    for one, shared in zip(alone, together):
        assert shared.choices[0].message.content == one.choices[0].message.content
        for attribute, row in one.model_extra["latent_diagnostics"].items():
            shared_row = shared.model_extra["latent_diagnostics"][attribute]
            assert shared_row["aspect"] == row["aspect"]
            assert [shared_row["before"], shared_row["after"]] == pytest.approx([row["before"], row["after"]], abs=1e-5)
    assert together[0].model_extra["personality"] != together[1].model_extra["personality"]


def post(server, body, raw=False):
    content = body if raw else json.dumps(body).encode()
    return httpx.post(server.url + "/v1/chat/completions", content=content, timeout=60)


USER = [{"role": "user", "content": "Hi there"}]


@pytest.mark.parametrize("body, status, says", [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    ({"model": MODEL_ID}, 400, "`messages` is required"),
    ({"messages": []}, 400, "`messages` is required"),
    ({"messages": [{"role": "user"}]}, 400, "string `content`"),
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}, 400, "end with a user"),
    ({"messages": [{"role": "wizard", "content": "Hi"}]}, 400, "valid roles"),
    ({"messages": USER, "personality": {"humour": "dry"}}, 422, "valid attributes: ['language_style', 'attitude'"),
    ({"messages": USER, "personality": {"attitude": "grumpy"}}, 422, "valid aspects: ['pessimistic', 'optimistic']"),
    ({"messages": USER, "personality": "optimistic"}, 422, "must be an object"),
    ({"messages": USER, "personality": {"attitude": "optimistic"}, "attribute_weights": {"attitude": "x"}}, 422,
     "finite number"),
    ({"messages": USER, "personalty": {"attitude": "optimistic"}}, 422, "Unknown field(s) ['personalty']"),
    ({"messages": USER, "sampler_method": "magic"}, 422, "sampler_method"),
    ({"messages": USER, "temperature": "hot"}, 422, "`temperature` must be a number"),
    ({"messages": USER, "n": 2}, 422, "`n` must be"),
    ({"messages": USER, "use_ebm": False, "latent_guidance_scale": 2.0}, 422, "needs `use_ebm: true`"),
    ({"messages": USER, "max_tokens": 33}, 422, "`max_tokens` must be between 1 and 32"),
    ({"messages": USER * 9}, 413, "limit of 8"),
    ({"messages": [{"role": "user", "content": "word " * 5000}]}, 413, "bytes"),
    ({"messages": [{"role": "user", "content": "word " * 200}]}, 413, "does not fit"),
    ({"messages": USER, "model": "gpt-4"}, 404, "does not exist"),
])
def test_bad_requests_get_the_protocol_error_object(server, body, status, says):
    response = post(server, body, raw=isinstance(body, bytes))
    assert response.status_code == status
    error = response.json()["error"]
    assert says in error["message"] and set(error) == {"message", "type", "param", "code"}


def test_unknown_routes_and_methods_get_error_objects_and_the_server_keeps_working(server, client):
    assert httpx.get(server.url + "/v1/nothing").json()["error"]["message"] == "Not Found"
    assert httpx.get(server.url + "/v1/chat/completions").status_code == 405
    assert ask(client, {"attitude": "optimistic"}, max_tokens=2).choices[0].message.content


def test_openai_client_raises_on_an_unknown_aspect(client):
    with pytest.raises(openai.UnprocessableEntityError, match="valid aspects"):
        ask(client, {"attitude": "grumpy"})


def test_a_client_that_goes_away_mid_stream_cancels_its_row(server, client):
    with httpx.stream("POST", server.url + "/v1/chat/completions", timeout=60,
                      json={"messages": USER, "max_tokens": 32, "stream": True, **FIXED_STEPS}) as response:
        assert response.status_code == 200
        first = next(response.iter_lines())
        assert json.loads(first.removeprefix("data: "))["choices"][0]["delta"]["role"] == "assistant"
    assert ask(client, {"attitude": "optimistic"}, max_tokens=2).choices[0].message.content  # still serving


def test_a_full_queue_answers_503(separated_model, tiny_processor):
    app = create_app(separated_model, tiny_processor, MODEL_ID, Limits(max_new_tokens=32),
                     EngineSettings(max_batch_size=1, batch_wait_s=0.0, max_queue=1))
    body = {"messages": USER, "max_tokens": 32, "stream": True, "latent_guidance_scale": 0.0}
    with BackgroundServer(app) as server:
        engine = app.state.engine
        release = threading.Event()
        decode = engine._decode

        def held_decode(jobs):  # keep the first batch running until the queue has been filled
            release.wait(30)
            decode(jobs)

        engine._decode = held_decode
        try:
            with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=60) as running, \
                    httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=60) as waiting:
                assert running.status_code == waiting.status_code == 200
                refused = post(server, body)
                assert refused.status_code == 503 and refused.json()["error"]["code"] == "queue_full"
                release.set()
                for response in (running, waiting):  # both still finish
                    assert [line for line in response.iter_lines() if line][-1] == "data: [DONE]"
        finally:
            release.set()


def test_ctrl_c_lets_the_running_reply_finish_and_exits_cleanly(tmp_path, separated_model, tiny_processor):
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    separated_model.save_pretrained(tmp_path)
    tiny_processor.save_pretrained(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "modeling_miracle.commands.cli", "serve", "--model", str(tmp_path),
                                "--port", str(port), "--model-id", MODEL_ID], stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(url + "/v1/models", timeout=5)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, "the server did not start"
                time.sleep(0.3)
        with httpx.stream("POST", url + "/v1/chat/completions", timeout=60,
                          json={"messages": USER, "max_tokens": 32, "stream": True}) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
            process.send_signal(signal.SIGINT)
            rest = [line for line in lines if line]
        assert rest[-1] == "data: [DONE]"
        assert json.loads(rest[-2].removeprefix("data: "))["choices"][0]["finish_reason"] in ("stop", "length")
        assert process.wait(60) == 0
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
