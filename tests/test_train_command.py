"""`miracle train` across processes (`accelerate launch`, gloo on CPU), with gradient accumulation and bf16 autocast.

The runs use tiny random backbones saved to disk (dropout off) and 48 synthetic examples (two attributes), a
global batch of 8 for 2 epochs (12 optimisation steps). `tests/train_worker.py` records what every process saw.

Tolerances, where one run is compared with another (same seed, same data order): "without sampling noise" means
`kl_zero_ratio=1`, so beta stays 0 and z is the posterior mean (no random draw whose stream differs between the
runs); then the logged loss must agree within 0.5% at every step and the reconstruction loss within 0.005 nats.
What still differs is by design: L_D and the token-weighted reconstruction mean are computed per process (or per
micro-batch), not over the global batch (measured: loss 0.09%, reconstruction 0.0008 nats at most).
"""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from modeling_miracle import MiracleForPersonalizedGeneration, MiracleProcessor
from training import train_command
from training.cli import main as cli
from training.kl_schedule import cyclical_beta
from training.trainer import LOGGED_COMPONENTS

from .helpers import save_tiny_backbones, write_dialogue_files
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
        for name in LOGGED_COMPONENTS:
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
    from training.peft_utils import load_lora

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
