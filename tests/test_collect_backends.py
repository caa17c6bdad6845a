"""The chat backends: an OpenAI-compatible server over real HTTP, and local transformers models."""

import copy
import socket
import time

import pytest

from modeling_miracle.collect import FatalBackendError, OpenAICompatibleBackend, RequestFailed, SamplingSettings, TransformersBackend
from modeling_miracle.collect import CollectConfig, collect
from modeling_miracle.collect.cleaning import parse_dialogue

from .conftest import CHAT_TEMPLATE

MESSAGES = [{"role": "user", "content": "Write a dialogue about kind=well number 1."}]


def test_openai_compatible_reply_and_retry_counts(chat_server):
    backend = OpenAICompatibleBackend(chat_server.url(), "m", api_key_env=None, max_retries=3, backoff=0.01, timeout=1.0)
    assert parse_dialogue(backend.chat(MESSAGES, seed=1)) is not None
    started = time.time()
    assert parse_dialogue(backend.chat([{"role": "user", "content": "kind=ratelimit"}])) is not None
    assert parse_dialogue(backend.chat([{"role": "user", "content": "kind=slow"}])) is not None
    assert time.time() - started < 5
    assert backend.retries == {"HTTP 429": 1, "timeout": 1} and backend.requests_sent == 5
    assert backend.describe()["base_url"] == chat_server.url() and "EMPTY" not in str(backend.describe())


def test_client_errors_fail_or_stop_without_retrying(chat_server):
    backend = OpenAICompatibleBackend(chat_server.url("/badrequest"), "m", max_retries=3, backoff=0.01)
    with pytest.raises(RequestFailed, match="HTTP 400"):
        backend.chat(MESSAGES)
    with pytest.raises(FatalBackendError, match="HTTP 404"):
        OpenAICompatibleBackend(chat_server.url("/missing"), "m", max_retries=3, backoff=0.01).chat(MESSAGES)
    with pytest.raises(FatalBackendError, match="HTTP 401.*no key"):
        OpenAICompatibleBackend(chat_server.url("/unauthorized"), "m", api_key_env="UNSET_VARIABLE_X").chat(MESSAGES)
    assert chat_server.count() == 3


def _free_port() -> int:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_server_that_never_answered_stops_the_run_at_once_naming_the_url():
    url = f"http://127.0.0.1:{_free_port()}/v1"
    backend = OpenAICompatibleBackend(url, "m", max_retries=5, backoff=10.0)
    started = time.time()
    with pytest.raises(FatalBackendError, match=f"cannot connect to {url} .*Connect.*--base-url"):
        backend.chat(MESSAGES)
    assert time.time() - started < 5 and backend.retries == {}


def test_connection_errors_after_the_server_answered_are_retried_then_fail(chat_server):
    backend = OpenAICompatibleBackend(chat_server.url(), "m", max_retries=2, backoff=0.01, timeout=1.0)
    assert parse_dialogue(backend.chat(MESSAGES)) is not None
    backend._client = OpenAICompatibleBackend(f"http://127.0.0.1:{_free_port()}/v1", "m")._client  # the server went away
    with pytest.raises(RequestFailed, match=r"connection after 2 retries to .*127\.0\.0\.1.*: \w*Connect"):
        backend.chat(MESSAGES)
    assert backend.retries == {"connection": 2}


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_offline_mode_stops_at_once_naming_the_variable(variable, monkeypatch):
    monkeypatch.setenv(variable, "1")
    with pytest.raises(FatalBackendError, match=f"{variable} is set.*{variable}=0"):
        OpenAICompatibleBackend("http://127.0.0.1:8080/v1", "m")


def test_collect_command_stops_with_one_message_and_status_1_when_nothing_listens(tmp_path, capsys):
    from modeling_miracle.commands.collect import main

    url = f"http://127.0.0.1:{_free_port()}/v1"
    started = time.time()
    assert main(["--output_dir", str(tmp_path / "c"), "--base_url", url, "--only", "attitude", "--dialogues_per_aspect", "2",
                 "--no_progress"]) == 1
    assert time.time() - started < 30
    err = capsys.readouterr().err
    assert f"cannot connect to {url}" in err


def test_local_backend_prefills_and_is_seeded(gpt2_tokenizer):
    from .conftest import make_model

    tokenizer = copy.deepcopy(gpt2_tokenizer)
    tokenizer.chat_template = CHAT_TEMPLATE
    decoder = make_model("gpt2").decoder
    backend = TransformersBackend(model=decoder, tokenizer=tokenizer, sampling=SamplingSettings(temperature=1.0, max_tokens=8))
    first, again, other = backend.chat(MESSAGES, seed=3), backend.chat(MESSAGES, seed=3), backend.chat(MESSAGES, seed=4)
    assert first.startswith("[PersonA]:") and first == again and first != other
    greedy = TransformersBackend(model=decoder, tokenizer=tokenizer, prefill="",
                                 sampling=SamplingSettings(temperature=0, max_tokens=4, extra={"repetition_penalty": 1.2}))
    assert greedy.chat(MESSAGES) == greedy.chat(MESSAGES, seed=9)
    assert greedy.describe()["sampling"]["repetition_penalty"] == 1.2


@pytest.mark.slow
def test_packaged_decoder_writes_a_parseable_dialogue(tmp_path):
    """The local backend on SmolLM2-135M-Instruct (the packaged offline decoder), through the whole collection."""
    import torch

    torch.set_num_threads(1)
    backend = TransformersBackend(sampling=SamplingSettings(temperature=0.7, top_p=0.9, max_tokens=160,
                                                            extra={"repetition_penalty": 1.1}))
    config = CollectConfig(output_dir=str(tmp_path / "local"), only=["attitude"], dialogues_per_aspect=2, seed=0, progress=False)
    report = collect(config, backend)
    print(report.table(), dict(report.drops))
    assert sum(c.received for c in report.counts.values()) == 4
    assert sum(c.parsed for c in report.counts.values()) >= 1, report.table()
    assert "smollm2" in (tmp_path / "local" / "README.md").read_text().lower()
