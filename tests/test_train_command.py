"""`miracle train`: across processes (`accelerate launch`, gloo on CPU), with gradient accumulation and bf16 autocast;
and in one process on the packaged corpus: output folders, seeds, resume, the run summary, and fine-tuning a saved
model (new attribute, LoRA), including models saved with a stale GGUF marker.

The runs use tiny random backbones saved to disk (dropout off) and 48 synthetic examples (two attributes), a
global batch of 8 for 2 epochs (12 optimisation steps). `tests/train_worker.py` records what every process saw.

Tolerances, where one run is compared with another (same seed, same data order): "without sampling noise" means
`kl_zero_ratio=1`, so beta stays 0 and z is the posterior mean (no random draw whose stream differs between the
runs); then the logged loss must agree within 0.5% at every step and the reconstruction loss within 0.005 nats.
What still differs is by design: L_D and the token-weighted reconstruction mean are computed per process (or per
micro-batch), not over the global batch (measured: loss 0.09%, reconstruction 0.0008 nats at most).
"""

import re
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from modeling_miracle import MiracleForPersonalizedGeneration, MiracleProcessor
from modeling_miracle.commands import train as train_command
from modeling_miracle.commands.cli import main


def cli(argv):
    """The CLI with `--debug`: a mistake raises its exception (without it: one line on stderr, status 2)."""
    return main(["--debug", *argv])
from modeling_miracle.training.data import corpus_files
from modeling_miracle.training.kl_schedule import cyclical_beta
from modeling_miracle.training.trainer import LOGGED_COMPONENTS

from .conftest import save_tiny_backbones, write_dialogue_files
from .train_worker import recorders

REPO = Path(__file__).resolve().parents[1]
DDP_CONFIG, FSDP_CONFIG = REPO / "examples" / "accelerate_ddp.yaml", REPO / "examples" / "accelerate_fsdp.yaml"
TWO_ATTRIBUTES = {"language_style": ["plain", "lyrical"], "attitude": ["pessimistic", "optimistic"]}
TINY = {"latent_size": 16, "head_hidden_size": 16}
NO_SAMPLING_NOISE = {**TINY, "kl_zero_ratio": 1.0, "kl_ramp_ratio": 0.0}
LOSS_RTOL, RECONSTRUCTION_ATOL = 5e-3, 5e-3
STEPS = 12


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train_command")
    encoder, decoder = save_tiny_backbones(folder / "backbones", dropout=False)
    return folder, encoder, decoder, write_dialogue_files(folder / "data")


def flags(files, output_dir, per_device_batch, miracle_config, *extra, use_cpu=True):
    _, encoder, decoder, data = files
    return [
        "train", "--encoder", encoder, "--decoder", decoder, "--attributes", json.dumps(TWO_ATTRIBUTES),
        "--miracle_config", json.dumps(miracle_config),
        "--data_files", *(f"{attribute}={path}" for attribute, path in data.items()),
        "--max_encoder_length", "64", "--max_prompt_length", "64", "--max_response_length", "32",
        "--lora", "true", "--lora_r", "4", "--lora_dropout", "0",
        "--output_dir", str(output_dir), "--num_train_epochs", "2", "--per_device_train_batch_size", str(per_device_batch),
        "--learning_rate", "3e-3", "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none",
        "--disable_tqdm", "true", "--seed", "0", *(["--use_cpu", "true"] if use_cpu else []), *extra,
    ]


def train_here(argv) -> dict:
    """One training run in this process; returns its record (see `tests/train_worker.py`)."""
    record, collator_class, trainer_class = recorders()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_command, "MiracleDataCollator", collator_class)
        patch.setattr(train_command, "MiracleTrainer", trainer_class)
        assert cli(argv) == 0
    return record


def launch(record_dir, argv, processes=2) -> subprocess.CompletedProcess:
    """`accelerate launch` of the worker with the DDP example config (its multi-process launcher; on CPU the
    processes train with gloo when the Trainer is given `--use_cpu true`), in float32."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(DDP_CONFIG),
               "--num_processes", str(processes), "--mixed_precision", "no", "--main_process_port", "0",
               "-m", "tests.train_worker", str(record_dir), *argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def logged(record) -> list[dict]:
    return [entry for entry in record["log_history"] if "loss" in entry]


def assert_curves_match(expected: list[dict], actual: list[dict]) -> None:
    assert len(expected) == len(actual) == STEPS
    for a, b in zip(expected, actual):
        assert b["loss"] == pytest.approx(a["loss"], rel=LOSS_RTOL), (a, b)
        assert b["reconstruction_loss"] == pytest.approx(a["reconstruction_loss"], abs=RECONSTRUCTION_ATOL), (a, b)


@pytest.fixture(scope="module")
def one_process(files, tmp_path_factory):
    """The reference: one process, batch 8, without sampling noise."""
    return train_here(flags(files, tmp_path_factory.mktemp("one") / "out", 8, NO_SAMPLING_NOISE))


def test_gradient_accumulation_matches_one_larger_batch(files, one_process, tmp_path):
    accumulated = train_here(flags(files, tmp_path / "out", 4, NO_SAMPLING_NOISE, "--gradient_accumulation_steps", "2"))
    # Each optimisation step accumulates the two halves of the reference's batch.
    halves = accumulated["batches"]
    assert [a + b for a, b in zip(halves[::2], halves[1::2])] == one_process["batches"]
    assert_curves_match(logged(one_process), logged(accumulated))
    # The logged components are means over the step's micro-batches.
    micro = accumulated["micro_steps"]
    for step, entry in enumerate(logged(accumulated)):
        pair = [m for m in micro if m["step"] == step]
        assert len(pair) == 2 and pair[0]["kl_beta"] == pair[1]["kl_beta"] == entry["kl_beta"]
        for name in ("reconstruction_loss", "kl_loss", "classification_loss", "distance_loss"):
            assert entry[name] == pytest.approx((pair[0][name] + pair[1][name]) / 2, abs=1e-4)


def test_bf16_autocast_on_cpu_matches_float32(files, one_process, tmp_path):
    bf16 = train_here(flags(files, tmp_path / "out", 8, NO_SAMPLING_NOISE, "--bf16", "true"))
    assert_curves_match(logged(one_process), logged(bf16))
    # The Gaussian heads run in float32 under autocast: the first step's KL (same weights, same batch) is the
    # float32 one (in bfloat16 it was 4.5% off).
    assert logged(bf16)[0]["kl_loss"] == pytest.approx(logged(one_process)[0]["kl_loss"], rel=1e-3)
    model = MiracleForPersonalizedGeneration.from_pretrained(tmp_path / "out").eval()
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    processor = MiracleProcessor.from_pretrained(tmp_path / "out")
    inputs = processor(["What do you do on weekends?"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.generate(**inputs, personality={"attitude": "optimistic"}, max_new_tokens=4)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 4


def responses(files) -> Counter:
    return Counter(output for path in files[3].values() for line in Path(path).read_text().splitlines()
                   for output in json.loads(line)["output"])


@pytest.mark.slow
def test_two_processes_shard_the_data_share_beta_and_logs_and_save_once(files, tmp_path):
    """`accelerate launch --num_processes 2` with the default KL schedule (beta cycles, z is sampled)."""
    miracle_config = TINY
    result = launch(tmp_path / "records", flags(files, tmp_path / "out", 4, miracle_config))
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads((tmp_path / "records" / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world_size"] for r in records] == [2, 2]

    # Every example exactly once per epoch across the two processes (48 examples, 6 steps of 2 x 4 per epoch).
    for epoch in range(2):
        seen = Counter(x for r in records for batch in r["batches"][epoch * 6:(epoch + 1) * 6] for x in batch)
        assert seen == responses(files)
    assert records[0]["batches"][:6] != records[0]["batches"][6:]

    # The same beta in both processes, following the schedule; each process's own loss components differ (its
    # own examples), the logged ones are their means over both processes and identical in both logs.
    betas = [[m["kl_beta"] for m in r["micro_steps"]] for r in records]
    assert betas[0] == betas[1] == [cyclical_beta(step, STEPS) for step in range(STEPS)]
    assert len(set(betas[0])) == 3
    own = [[m["reconstruction_loss"] for m in r["micro_steps"]] for r in records]
    assert own[0] != own[1]
    logs = [logged(r) for r in records]
    assert logs[0] == logs[1] and len(logs[0]) == STEPS
    for step, entry in enumerate(logs[0]):
        computed = [n for n in LOGGED_COMPONENTS if n in records[0]["micro_steps"][step]]  # bow_loss only when on
        assert {"reconstruction_loss", "kl_loss", "classification_loss", "distance_loss", "kl_beta"} <= set(computed)
        assert set(computed) <= set(entry)
        for name in computed:
            mean = (records[0]["micro_steps"][step][name] + records[1]["micro_steps"][step][name]) / 2
            assert entry[name] == pytest.approx(mean, abs=1e-4), (step, name)

    # Saved once (LoRA merged), loads and generates; the adapter folder reloads too.
    assert result.stdout.count("Saved the trained model") == 1
    model = MiracleForPersonalizedGeneration.from_pretrained(tmp_path / "out").eval()
    processor = MiracleProcessor.from_pretrained(tmp_path / "out")
    inputs = processor([[{"role": "user", "content": "What do you do on weekends?"}],
                        [{"role": "user", "content": "Do you like rainy days?"}]])
    out = model.generate(**inputs, personality={"attitude": "optimistic", "language_style": "lyrical"}, max_new_tokens=5)
    assert out.shape == (2, inputs["input_ids"].shape[1] + 5)
    from modeling_miracle.training.peft_utils import load_lora

    base = MiracleForPersonalizedGeneration.from_pretrained(tmp_path / "out")
    adapted = load_lora(base, str(tmp_path / "out" / "adapter"))
    assert any("lora_A" in name for name, _ in adapted.named_parameters())


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(files, one_process, tmp_path):
    result = launch(tmp_path / "records", flags(files, tmp_path / "out", 4, NO_SAMPLING_NOISE))
    assert result.returncode == 0, result.stderr[-3000:]
    two = json.loads((tmp_path / "records" / "rank0.json").read_text())
    assert_curves_match(logged(one_process), logged(two))


@pytest.mark.slow
def test_a_cpu_launch_without_use_cpu_is_stopped(files, tmp_path):
    result = launch(tmp_path / "records", flags(files, tmp_path / "out", 4, TINY, use_cpu=False))
    assert result.returncode != 0
    assert "each process would train alone" in result.stderr and "--use_cpu true" in result.stderr


def test_lora_under_fsdp_is_refused_before_training(files, tmp_path):
    """FSDP needs GPUs (Accelerate does not shard on CPU processes): the Trainer's FSDP flag is set by hand here."""
    record, collator_class, trainer_class = recorders()

    class FSDPTrainer(trainer_class):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.is_fsdp_enabled = True

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_command, "MiracleTrainer", FSDPTrainer)
        with pytest.raises(ValueError, match="does not run under FSDP"):
            cli(flags(files, tmp_path / "out", 4, TINY))
    assert record["micro_steps"] == []


def test_accelerate_config_examples_load():
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    ddp, fsdp = load_config_from_file(str(DDP_CONFIG)), load_config_from_file(str(FSDP_CONFIG))
    assert ddp.distributed_type == DistributedType.MULTI_GPU and ddp.mixed_precision == "bf16"
    assert fsdp.distributed_type == DistributedType.FSDP and fsdp.fsdp_config["fsdp_version"] == 2
    assert fsdp.fsdp_config["fsdp_activation_checkpointing"] is False  # the latent prefix needs the decoder's cache


# ---------------------------------------------------------------- one process: run folders, seeds, saved models

CORPUS = corpus_files("train")


def run_flags(output_dir, max_steps, *extra, backbones=None, save_steps=None):
    model = ["--encoder", backbones[0], "--decoder", backbones[1],
             "--miracle_config", json.dumps({"latent_size": 8, "head_hidden_size": 8})] if backbones else []
    return [
        "train", *model,
        "--data_files", *(f"{attribute}={path}" for attribute, path in CORPUS.items()),
        "--max_dialogues_per_attribute", "4",
        "--max_encoder_length", "48", "--max_prompt_length", "48", "--max_response_length", "16",
        "--output_dir", str(output_dir), "--max_steps", str(max_steps), "--per_device_train_batch_size", "4",
        "--learning_rate", "3e-3", "--logging_steps", "1", "--report_to", "none", "--disable_tqdm", "true",
        "--seed", "0",
        *(["--save_steps", str(save_steps)] if save_steps else ["--save_strategy", "no"]),
        *extra,
    ]


def logged_losses(folder: Path) -> dict[int, float]:
    state = json.loads((folder / "trainer_state.json").read_text())
    return {entry["step"]: entry["loss"] for entry in state["log_history"] if "loss" in entry}


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    return save_tiny_backbones(tmp_path_factory.mktemp("backbones"), decoder_kind="llama")


@pytest.fixture(scope="module")
def first_run(backbones, tmp_path_factory):
    """An uninterrupted 6-step run, checkpoints at 3 and 6."""
    output = tmp_path_factory.mktemp("runs") / "first"
    assert cli(run_flags(output, 6, backbones=backbones, save_steps=3)) == 0
    return output


def test_output_dir_is_required(capsys):
    with pytest.raises(SystemExit):
        cli(["train"])
    assert "--output_dir is required" in capsys.readouterr().err


def test_settings_file_must_name_the_output_dir(tmp_path, capsys):
    settings = tmp_path / "run.json"
    settings.write_text(json.dumps({"max_steps": 3}))
    with pytest.raises(SystemExit):
        cli(["train", str(settings)])
    assert "must set `output_dir`" in capsys.readouterr().err


def test_summary_is_printed_before_the_first_step(backbones, tmp_path, capsys):
    rows = Path(corpus_files("validation")["attitude"]).read_text(encoding="utf-8").splitlines()[:3]
    validation = tmp_path / "attitude.validation.jsonl"
    validation.write_text("\n".join([rows[0], "{broken", rows[1], '{"input": ["hi"]}', rows[2]]) + "\n", encoding="utf-8")
    assert cli(run_flags(tmp_path / "run", 2, "--validation_files", f"attitude={validation}", "--skip_malformed", "true",
                         backbones=backbones)) == 0
    out = capsys.readouterr().out
    summary = out[out.index("MIRACLE training run"):]
    assert "attributes: language_style (plain, lyrical); attitude (pessimistic, optimistic)" in summary
    assert "training data: " in summary and "from 12 dialogues (language_style 4, attitude 4, mental_characteristics 4)" in summary
    assert "validation data: " in summary and "from 3 dialogues (attitude 3); skipped 2 malformed rows" in summary
    assert "steps: 2 optimisation steps of 4 examples" in summary
    assert "trained parameters: " in summary
    assert summary.index("steps:") < summary.index("Saved the trained model")


def test_a_non_empty_output_dir_is_refused_unless_resumed_or_overwritten(backbones, first_run, tmp_path):
    import shutil

    output = tmp_path / "again"
    shutil.copytree(first_run, output)
    with pytest.raises(FileExistsError, match="is not empty .*--resume_from_checkpoint true.*--overwrite_output_dir"):
        cli(run_flags(output, 2, backbones=backbones))
    assert cli(run_flags(output, 2, "--overwrite_output_dir", "true", backbones=backbones)) == 0
    # The old run's checkpoints went first: none is left to be mistaken for the new run's.
    assert not list(output.glob("checkpoint-*"))
    assert load_file(output / "model.safetensors").keys() == load_file(first_run / "model.safetensors").keys()


def test_same_seed_gives_the_same_run(backbones, first_run, tmp_path):
    assert cli(run_flags(tmp_path / "twin", 6, backbones=backbones, save_steps=3)) == 0
    assert logged_losses(tmp_path / "twin" / "checkpoint-6") == logged_losses(first_run / "checkpoint-6")
    mine, theirs = load_file(tmp_path / "twin" / "model.safetensors"), load_file(first_run / "model.safetensors")
    assert all(torch.equal(mine[name], theirs[name]) for name in theirs)


def test_resume_true_continues_from_the_last_checkpoint_with_the_same_losses(backbones, first_run, tmp_path):
    import shutil

    output = tmp_path / "interrupted"
    shutil.copytree(first_run / "checkpoint-3", output / "checkpoint-3")  # a run stopped after step 3
    assert cli(run_flags(output, 6, "--resume_from_checkpoint", "true", backbones=backbones, save_steps=3)) == 0
    resumed, uninterrupted = logged_losses(output / "checkpoint-6"), logged_losses(first_run / "checkpoint-6")
    assert sorted(resumed) == [1, 2, 3, 4, 5, 6]
    assert [resumed[s] for s in (4, 5, 6)] == pytest.approx([uninterrupted[s] for s in (4, 5, 6)], rel=1e-4)


def test_decoder_history_dropout_changes_what_the_decoder_sees_and_is_checked(backbones, first_run, tmp_path):
    assert cli(run_flags(tmp_path / "dropped", 2, "--decoder_history_dropout", "1.0", backbones=backbones, save_steps=2)) == 0
    dropped, full = logged_losses(tmp_path / "dropped" / "checkpoint-2"), logged_losses(first_run / "checkpoint-3")
    assert dropped[1] != pytest.approx(full[1], rel=1e-4)  # same weights and batch at step 1, shorter decoder prompts
    with pytest.raises(ValueError, match="decoder_history_dropout"):
        cli(run_flags(tmp_path / "bad", 2, "--decoder_history_dropout", "1.5", backbones=backbones))


def test_resume_true_without_a_checkpoint_says_so(backbones, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint|there is none"):
        cli(run_flags(tmp_path / "empty", 2, "--resume_from_checkpoint", "true", backbones=backbones))


def test_misspelt_miracle_config_key_is_refused(backbones, tmp_path):
    flags = run_flags(tmp_path / "typo", 2, backbones=backbones)
    flags[flags.index("--miracle_config") + 1] = json.dumps({"latnet_size": 8})
    with pytest.raises(ValueError, match=r"Unknown MiracleConfig option 'latnet_size'\. Did you mean 'latent_size'\?"):
        cli(flags)
    assert not (tmp_path / "typo").exists()


def test_wrongly_typed_miracle_config_value_is_refused(backbones, tmp_path):
    flags = run_flags(tmp_path / "typed", 2, backbones=backbones)
    flags[flags.index("--miracle_config") + 1] = json.dumps({"latent_size": 8, "use_distance_loss": "false"})
    with pytest.raises(ValueError, match=r"`use_distance_loss` must be true or false"):
        cli(flags)


def mark_as_gguf(folder: Path) -> None:
    """Make a saved model look like one saved before the fix: its decoder config keeps GGUF's quantization marker."""
    config = json.loads((folder / "config.json").read_text())
    config["decoder"]["quantization_config"] = {"quant_method": "gguf"}
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("extra", [[], ["--train_head_only", "false", "--lora", "true"]], ids=["head-only", "lora"])
def test_new_attribute_from_a_saved_model_with_a_stale_gguf_marker(first_run, tmp_path, extra):
    import shutil

    saved = tmp_path / "saved"
    shutil.copytree(first_run, saved, ignore=shutil.ignore_patterns("checkpoint-*"))
    mark_as_gguf(saved)
    flags = run_flags(tmp_path / "with_formality", 2, "--from_model", str(saved), "--add_attribute",
                      "formality=casual,formal", *extra)
    data = flags.index("--data_files")
    flags[data + 1:data + 4] = [f"formality={CORPUS['language_style']}"]
    assert cli(flags) == 0
    config = json.loads((tmp_path / "with_formality" / "config.json").read_text())
    assert "quantization_config" not in config and "quantization_config" not in config["decoder"]
    reloaded = MiracleForPersonalizedGeneration.from_pretrained(tmp_path / "with_formality").eval()
    assert getattr(reloaded, "hf_quantizer", None) is None
    assert list(reloaded.config.attributes)[-1] == "formality"
    processor = MiracleProcessor.from_pretrained(tmp_path / "with_formality")
    inputs = processor(["What do you do on weekends?"])
    assert reloaded.generate(**inputs, personality={"formality": "formal"}, max_new_tokens=2, min_new_tokens=2).shape[1] == inputs["input_ids"].shape[1] + 2


def test_continuing_training_from_a_saved_model_with_lora(first_run, tmp_path):
    import shutil

    saved = tmp_path / "saved"
    shutil.copytree(first_run, saved, ignore=shutil.ignore_patterns("checkpoint-*"))
    mark_as_gguf(saved)
    assert cli(run_flags(tmp_path / "continued", 2, "--from_model", str(saved), "--lora", "true")) == 0
    assert (tmp_path / "continued" / "adapter" / "adapter_config.json").is_file()
    assert getattr(MiracleForPersonalizedGeneration.from_pretrained(tmp_path / "continued"), "hf_quantizer", None) is None



def test_a_lora_model_continues_as_lora_without_repeating_the_flag(first_run, tmp_path, capsys):
    assert cli(run_flags(tmp_path / "lora", 2, "--from_model", str(first_run), "--lora", "true", "--lora_r", "4")) == 0
    capsys.readouterr()
    assert cli(run_flags(tmp_path / "again", 2, "--from_model", str(tmp_path / "lora"))) == 0
    out = capsys.readouterr().out
    assert "LoRA: r=4" in out and "as the saved model was trained" in out
    trained = re.search(r"trained parameters: [\d,]+ of [\d,]+ \(([\d.]+)%\)", out)
    assert trained and float(trained.group(1)) < 100
    assert "footprint: about" in out and "epoch(s)" in out
    assert (tmp_path / "again" / "adapter" / "adapter_config.json").is_file()
    card = (tmp_path / "again" / "README.md").read_text()
    assert "max_steps: 2" in card and "num_train_epochs" not in card  # a max_steps run: no epochs it never ran


def test_a_used_output_dir_is_one_line_and_status_2(first_run, capsys):
    assert main(["train", "--output_dir", str(first_run), "--max_steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "miracle train: error:" in err and "--overwrite_output_dir" in err


def test_from_model_default_and_missing_folders(tmp_path, capsys):
    from modeling_miracle.commands.train import lora_of_saved_model

    assert lora_of_saved_model("default")["r"] == 16  # the shipped model is LoRA-trained
    assert main(["train", "--output_dir", str(tmp_path / "o"), "--from_model", str(tmp_path / "missing")]) == 2
    assert "--from_model" in capsys.readouterr().err


def test_flags_ignored_with_from_model_are_refused(first_run, tmp_path):
    with pytest.raises(ValueError, match="--attributes cannot be combined with --from_model"):
        cli(run_flags(tmp_path / "x", 2, "--from_model", str(first_run), "--attributes", '{"a": ["b", "c"]}'))
    with pytest.raises(ValueError, match="give it with --from_model"):
        cli(run_flags(tmp_path / "y", 2, "--add_attribute", "formality=casual,formal"))


@pytest.mark.slow
def test_default_backbones_save_reload_add_attribute_train_save_reload(tmp_path):
    """The README's "Adding a new attribute" on the real default backbones (SmolLM2 comes from a GGUF file)."""
    base = tmp_path / "base"
    small = ["--max_dialogues_per_attribute", "2", "--per_device_train_batch_size", "2", "--lora_r", "4",
             "--max_prompt_length", "64"]
    assert cli(run_flags(base, 1, "--encoder", "default", "--decoder", "default", "--freeze_backbones", "true",
                         "--lora", "true", "--miracle_config", json.dumps({"latent_size": 16}), *small)) == 0
    assert "quantization_config" not in json.loads((base / "config.json").read_text())["decoder"]
    mark_as_gguf(base)  # as saved before the fix, from a converted copy that kept GGUF's marker

    flags = run_flags(tmp_path / "formality", 2, "--from_model", str(base), "--add_attribute", "formality=casual,formal",
                      *small)
    data = flags.index("--data_files")
    flags[data + 1:data + 4] = [f"formality={CORPUS['language_style']}"]
    assert cli(flags) == 0
    # Continuing training of the saved model with LoRA (refused as "GGUF does not support training" before).
    assert cli(run_flags(tmp_path / "continued", 1, "--from_model", str(tmp_path / "formality"), "--lora", "true",
                         *small)) == 0

    reloaded = MiracleForPersonalizedGeneration.from_pretrained(tmp_path / "continued").eval()
    assert getattr(reloaded, "hf_quantizer", None) is None
    assert list(reloaded.config.attributes) == ["language_style", "attitude", "mental_characteristics", "formality"]
    processor = MiracleProcessor.from_pretrained(tmp_path / "continued")
    inputs = processor(["What do you do on weekends?"])
    out = reloaded.generate(**inputs, personality={"formality": "formal"}, max_new_tokens=3, min_new_tokens=3)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3
