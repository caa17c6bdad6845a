"""End to end: `collect()` and `miracle collect` against a real local chat-completions server."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modeling_miracle.training import load_miracle_dataset
from modeling_miracle.commands.cli import main


def cli(argv):
    """The CLI with `--debug`: a mistake raises its exception (without it: one line on stderr, status 2)."""
    return main(["--debug", *argv])
from modeling_miracle.collect import BackendArguments, CleaningConfig, CollectConfig, FatalBackendError, FilterConfig, collect
from modeling_miracle.collect.store import LEDGER_FILE, Ledger

from .conftest import save_tiny_backbones

ROOT = Path(__file__).resolve().parents[1]
KINDS = ["well", "well", "well", "malformed", "ratelimit", "error500", "slow", "short", "question", "long", "few", "dup"]
SECRET = "test-secret-7f3a"
FORMALITY = {"formality": ["casual", "formal"]}


def topics_file(folder: Path, kinds: list[str]) -> Path:
    path = folder / "topics.txt"
    path.write_text("".join(f"I talk about kind={kind} number {i}.\n" for i, kind in enumerate(kinds)), encoding="utf-8")
    return path


def backend_args(server, **overrides):
    settings = dict(base_url=server.url(), model="scripted", api_key_env="MIRACLE_TEST_KEY", concurrency=3, timeout=1.0,
                    max_retries=2, backoff=0.01, temperature=0.7, top_p=0.9, max_tokens=300, extra_body='{"min_p": 0.05}')
    return BackendArguments(**{**settings, **overrides})


def run_config(folder, formality_file, topics, **overrides):
    settings = dict(output_dir=str(folder), attributes_file=[str(formality_file)], topics_file=str(topics),
                    dialogues_per_aspect=len(KINDS), split_fractions=[0.6, 0.4], progress=False)
    return CollectConfig(**{**settings, **overrides})


@pytest.fixture
def collected(tmp_path, formality_file, chat_server, monkeypatch, capfd):
    monkeypatch.setenv("MIRACLE_TEST_KEY", SECRET)
    topics = topics_file(tmp_path, KINDS)
    config = run_config(tmp_path / "out", formality_file, topics)
    report = collect(config, backend_args(chat_server).build())
    return config, report, chat_server, topics


def test_retries_drop_counts_and_outputs(collected, capfd):
    config, report, server, _ = collected
    out = Path(config.output_dir)
    # 429 and the slow reply are retried once per item; 500 until the retries run out (2 items x 2 retries).
    assert report.retries == {"HTTP 429": 2, "timeout": 2, "HTTP 500": 4}
    assert server.count("ratelimit") == 4 and server.count("slow") == 4 and server.count("error500") == 6
    assert report.requests_this_run == 24
    # Everything the issue names is dropped and counted once per dialogue (the 'dup' reply is kept the first time).
    assert dict(report.drops) == {"unparseable": 2, "short_response": 2, "question_in_response": 2, "overlong_turn": 2,
                                  "too_few_turns": 2, "near_duplicate": 1}
    for aspect in ("formality=casual", "formality=formal"):
        counts = report.counts[aspect]
        assert (counts.requested, counts.received, counts.parsed, counts.failed) == (12, 11, 10, 1)
    assert sum(c.kept for c in report.counts.values()) == 11
    assert "| formality=casual | 12 | 11 | 10 |" in report.table()
    # The failed items are logged for the next run; the rows load as training data.
    assert len(Ledger(out / "failures.jsonl").read()) == 2
    train, validation = out / "dialogue_formality.train.jsonl", out / "dialogue_formality.validation.jsonl"
    rows = [json.loads(line) for path in (train, validation) for line in path.read_text().splitlines()]
    assert len(rows) == 11 and {r["tag"] for r in rows} == {0, 1}
    assert all(set(r) == {"input", "output", "personas", "tag"} and len(r["input"]) == len(r["output"]) == 4 for r in rows)
    assert all("kind=" in r["personas"] for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["drops"]["near_duplicate"] == 1 and summary["splits"]["formality"] == {"train": report.splits["formality"]["train"], "validation": report.splits["formality"]["validation"]}
    card = (out / "README.md").read_text()
    assert "scripted" in card and "| near_duplicate | 1 |" in card and "miracle train" in card and "Forget the instruction" in card


def test_requests_carry_key_and_sampling_but_key_is_never_written(collected, capfd):
    config, _, server, _ = collected
    request = server.requests[0]
    assert request["authorization"] == f"Bearer {SECRET}"
    body = request["body"]
    assert (body["model"], body["temperature"], body["top_p"], body["max_tokens"], body["min_p"]) == ("scripted", 0.7, 0.9, 300, 0.05)
    assert isinstance(body["seed"], int)
    captured = capfd.readouterr()
    assert SECRET not in captured.out + captured.err
    for path in Path(config.output_dir).iterdir():
        assert SECRET not in path.read_text(encoding="utf-8"), path
    run = json.loads((Path(config.output_dir) / "collect_run.json").read_text())
    assert run["backends"][0]["api_key_env"] == "MIRACLE_TEST_KEY"


def test_rerun_sends_only_failed_items_and_can_refilter(collected, formality_file, tmp_path):
    config, first, server, topics = collected
    server.fail_500 = False
    before = server.count()
    report = collect(config, backend_args(server).build())
    assert server.count() - before == 2 and server.count("error500") == 8  # only the two failed items, once each
    assert sum(c.kept for c in report.counts.values()) == 13 and all(c.failed == 0 for c in report.counts.values())
    # Rebuilding with other cleaning settings sends nothing.
    before = server.count()
    report = collect(config, backend_args(server).build(), CleaningConfig(min_turns=2, allow_questions=True, min_response_words=1))
    assert server.count() == before and report.requests_this_run == 0
    assert "too_few_turns" not in report.drops and "question_in_response" not in report.drops
    # Both 'short' dialogues now pass, but their identical 2-word reply makes the second a near-duplicate.
    assert sum(c.kept for c in report.counts.values()) == 18 and report.drops["near_duplicate"] == 2
    # A different seed would change the plan: refused.
    with pytest.raises(ValueError, match="seed: 0 before, 1 now"):
        collect(run_config(config.output_dir, formality_file, topics, seed=1), backend_args(server).build())


def test_output_trains_a_tiny_model_for_a_step(collected, tmp_path):
    config, _, _, _ = collected
    train = Path(config.output_dir) / "dialogue_formality.train.jsonl"
    turns = sum(len(json.loads(line)["output"]) for line in train.read_text().splitlines())
    dataset = load_miracle_dataset({"formality": str(train)}, FORMALITY)
    assert len(dataset) == turns and set(dataset["aspect_id"]) <= {0, 1}
    encoder, decoder = save_tiny_backbones(tmp_path / "backbones")
    output = tmp_path / "model"
    assert cli(["train", "--encoder", encoder, "--decoder", decoder, "--attributes", json.dumps(FORMALITY),
                "--miracle_config", json.dumps({"latent_size": 16, "head_hidden_size": 16}),
                "--data_files", f"formality={train}",
                "--validation_files", f"formality={Path(config.output_dir) / 'dialogue_formality.validation.jsonl'}",
                "--max_encoder_length", "64", "--max_prompt_length", "64", "--max_response_length", "32",
                "--output_dir", str(output), "--max_steps", "1", "--per_device_train_batch_size", "4",
                "--report_to", "none", "--disable_tqdm", "true", "--save_strategy", "no"]) == 0
    from modeling_miracle import MiracleConfig

    assert MiracleConfig.from_pretrained(output).attributes == FORMALITY


def test_fatal_errors_stop_the_run_with_a_clear_message(tmp_path, formality_file, chat_server, monkeypatch, capsys):
    monkeypatch.setenv("MIRACLE_TEST_KEY", SECRET)
    topics = topics_file(tmp_path, ["well"] * 6)
    config = run_config(tmp_path / "a", formality_file, topics, dialogues_per_aspect=6)
    with pytest.raises(FatalBackendError, match="HTTP 401: check the API key .*MIRACLE_TEST_KEY"):
        collect(config, backend_args(chat_server, base_url=chat_server.url("/unauthorized")).build())
    assert chat_server.count() <= 3  # only the requests already in flight; none retried
    code = cli(["collect", "--output-dir", str(tmp_path / "b"), "--attributes-file", str(formality_file),
                "--topics-file", str(topics), "--base-url", chat_server.url("/missing"), "--api-key-env", "MIRACLE_TEST_KEY",
                "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "HTTP 404: check --base-url" in err and SECRET not in err


def test_test_mode_collects_tagged_multi_attribute_dialogues(tmp_path, formality_file, chat_server):
    from modeling_miracle.evaluation.suite import evaluation_examples

    topics = topics_file(tmp_path, ["well"] * 3)
    config = CollectConfig(output_dir=str(tmp_path / "test"), attributes_file=["default", str(formality_file)],
                           only=["attitude", "formality"], topics_file=str(topics), mode="test", dialogues_per_aspect=2,
                           progress=False)
    report = collect(config, backend_args(chat_server, api_key_env="UNSET_KEY_VARIABLE").build())
    assert {r["authorization"] for r in chat_server.requests} == {"Bearer EMPTY"}  # never a saved Hugging Face token
    assert set(report.counts) == {"attitude=pessimistic,formality=casual", "attitude=pessimistic,formality=formal",
                                  "attitude=optimistic,formality=casual", "attitude=optimistic,formality=formal"}
    rows = [json.loads(line) for line in (tmp_path / "test" / "dialogue_multi.test.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and {json.dumps(r["tags"], sort_keys=True) for r in rows} == {
        json.dumps({"attitude": a, "formality": f}, sort_keys=True) for a in (0, 1) for f in (0, 1)}
    prompt = next(r["prompt"] for r in chat_server.requests if "optimistic" in r["prompt"] and "formal" in r["prompt"])
    assert "Write the multi-turn" in prompt and " and " in prompt
    examples = evaluation_examples(str(tmp_path / "test" / "dialogue_multi.test.jsonl"), {"attitude": ["pessimistic", "optimistic"], "formality": ["casual", "formal"]})
    assert len(examples) == 8 * 4


def test_classifier_filters(collected, tmp_path):
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    from modeling_miracle.backbones import minilm_folder

    config, first, server, _ = collected

    def biased_classifier(folder, labels):  # predicts label 1 with probability ~0.88 for any text
        model = BertForSequenceClassification(BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                                         intermediate_size=16, num_labels=2, id2label=dict(enumerate(labels)),
                                                         label2id={l: i for i, l in enumerate(labels)}))
        model.classifier.weight.data.zero_()
        model.classifier.bias.data = model.classifier.bias.data.new_tensor([0.0, 2.0])
        model.save_pretrained(folder)
        BertTokenizerFast.from_pretrained(minilm_folder()).save_pretrained(folder)
        return str(folder)

    toxic = biased_classifier(tmp_path / "toxicity", ["neutral", "toxic"])
    kept = sum(c.kept for c in first.counts.values())
    report = collect(config, backend_args(server).build(), filters=FilterConfig(toxicity_model=toxic, max_toxicity=0.5))
    assert report.drops["toxic"] == kept and sum(c.kept for c in report.counts.values()) == 0
    report = collect(config, backend_args(server).build(), filters=FilterConfig(toxicity_model=toxic, max_toxicity=0.95))
    assert report.drops["toxic"] == 0
    with pytest.raises(ValueError, match="Pass the right ones with --toxic-labels"):
        collect(config, backend_args(server).build(), filters=FilterConfig(toxicity_model=toxic, toxic_labels=["hate"]))
    # The aspect-score filter: this scorer rates everything 'formal' (label order matched by name).
    biased_classifier(tmp_path / "scorers" / "formality", ["casual", "formal"])
    report = collect(config, backend_args(server).build(), filters=FilterConfig(aspect_scorers=str(tmp_path / "scorers")))
    assert report.counts["formality=casual"].kept == 0 and report.counts["formality=formal"].kept == first.counts["formality=formal"].kept
    assert report.drops["low_aspect_score"] == first.counts["formality=casual"].kept
    # No scorer and no held-out dialogues to train one: a clear error.
    with pytest.raises(ValueError, match="too few held-out dialogues"):
        collect(config, backend_args(server).build(), filters=FilterConfig(aspect_scorers=str(tmp_path / "none")))


def test_sigkill_midway_then_resume_loses_and_duplicates_nothing(tmp_path, formality_file, chat_server, monkeypatch):
    monkeypatch.setenv("MIRACLE_TEST_KEY", SECRET)
    topics = topics_file(tmp_path, ["delay"] * 20)
    killed, clean_dir = tmp_path / "killed", tmp_path / "uninterrupted"
    flags = ["collect", "--attributes-file", str(formality_file), "--topics-file", str(topics), "--dialogues-per-aspect", "20",
             "--base-url", chat_server.url(), "--api-key-env", "MIRACLE_TEST_KEY", "--concurrency", "2", "--no-progress",
             "--seed", "3", "--min-turns", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "modeling_miracle.commands.cli", *flags, "--output-dir", str(killed)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ledger_path = killed / LEDGER_FILE
    deadline = time.time() + 120
    while time.time() < deadline and (not ledger_path.is_file() or ledger_path.read_text().count("\n") < 8):
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    with open(ledger_path, "a", encoding="utf-8") as handle:  # as if the kill had cut a write in half
        handle.write('{"key": "formality=casual#19", "topic": "I ta')
    finished = Ledger(ledger_path).read()
    assert 8 <= len(finished) < 40, "the kill should land midway"
    requested_before = len(chat_server.requests)

    assert cli([*flags, "--output-dir", str(killed)]) == 0
    records = Ledger(ledger_path).read()
    identities = [(r["key"], r["topic"]) for r in records]
    assert len(identities) == len(set(identities)) == 40  # nothing lost, nothing twice
    assert records[:len(finished)] == finished
    # Items finished before the kill were not requested again; at most the 2 in flight at the kill were sent twice.
    assert len(chat_server.requests) - requested_before == 40 - len(finished)
    assert max(chat_server.seen.values()) <= 2 and sum(v == 2 for v in chat_server.seen.values()) <= 2
    chat_server.seen.clear()
    # The resumed collection equals an uninterrupted one.
    assert cli([*flags, "--output-dir", str(clean_dir)]) == 0
    for name in ("dialogue_formality.train.jsonl", "dialogue_formality.validation.jsonl", "dialogue_formality.test.jsonl"):
        assert (killed / name).read_text() == (clean_dir / name).read_text(), name
    assert (killed / "dialogue_formality.train.jsonl").read_text().count("\n") > 20
