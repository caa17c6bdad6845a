"""The example scripts' own logic (their training runs take minutes on the real backbones)."""

import importlib.util
from pathlib import Path

import pytest

from modeling_miracle.default_model import DEFAULT_MODEL_DIR

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def train_default_model():
    spec = importlib.util.spec_from_file_location("train_default_model", EXAMPLES / "train_default_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_default_model_writes_to_its_run_folder_unless_told_to_replace_the_shipped_parts(train_default_model,
                                                                                                tmp_path, capsys):
    args = train_default_model.parse_args(["--work-dir", str(tmp_path / "run")])
    assert train_default_model.output_folder(args) == tmp_path / "run" / "final"
    assert train_default_model.output_folder(args).resolve() != DEFAULT_MODEL_DIR.resolve()
    shipped = train_default_model.parse_args(["--work-dir", str(tmp_path / "other"), "--replace-shipped"])
    assert train_default_model.output_folder(shipped) == DEFAULT_MODEL_DIR


def test_train_default_model_refuses_a_used_work_dir_unless_resumed_or_overwritten(train_default_model, tmp_path,
                                                                                   capsys):
    work = tmp_path / "run"
    (work / "checkpoint-100").mkdir(parents=True)
    with pytest.raises(SystemExit):
        train_default_model.parse_args(["--work-dir", str(work)])
    error = capsys.readouterr().err
    assert "--work-dir" in error and "is not empty" in error and "--resume" in error and "--overwrite" in error
    assert train_default_model.parse_args(["--work-dir", str(work), "--resume"]).resume
    train_default_model.parse_args(["--work-dir", str(work), "--overwrite"])
    assert not (work / "checkpoint-100").exists()  # the old run's checkpoints go before the new run starts


def test_output_is_swapped_in_only_once_written(train_default_model, tmp_path):
    output = tmp_path / "model"
    output.mkdir()
    (output / "old.txt").write_text("old")

    def failing(folder):
        folder.mkdir()
        (folder / "half.txt").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_default_model.write_atomically(output, failing)
    assert [p.name for p in output.iterdir()] == ["old.txt"]  # an interrupted write leaves the old output alone
    train_default_model.write_atomically(output, lambda folder: (folder.mkdir(), (folder / "new.txt").write_text("new")))
    assert [p.name for p in output.iterdir()] == ["new.txt"]


@pytest.fixture
def ship_default_model(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))  # it imports `write_atomically` from train_default_model
    spec = importlib.util.spec_from_file_location("ship_default_model", EXAMPLES / "ship_default_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_parts(folder: Path) -> Path:
    import json

    import torch
    from safetensors.torch import save_file

    folder.mkdir()
    save_file({"base_model.model.bow_head.weight": torch.ones(4, 2), "base_model.model.prior_head.mu.weight": torch.ones(2, 2)},
              folder / "adapter_model.safetensors")
    (folder / "adapter_config.json").write_text(json.dumps({"modules_to_save": ["prior_head", "bow_head"]}))
    (folder / "miracle_settings.json").write_text(json.dumps({"config": {"latent_size": 2, "bow_loss_weight": 0.5}}))
    return folder


def test_shipping_drops_the_training_only_head_and_records_the_decoding_defaults(ship_default_model, tmp_path):
    import json

    import torch

    from safetensors.torch import load_file

    parts, output = fake_parts(tmp_path / "final"), tmp_path / "shipped"
    ship_default_model.ship(parts, {"latent_guidance_scale": 2.0, "sampler_start_scale": 0.0}, output)
    shipped = load_file(output / "adapter_model.safetensors")
    assert list(shipped) == ["base_model.model.prior_head.mu.weight"]
    assert shipped["base_model.model.prior_head.mu.weight"].dtype == torch.float16
    assert json.loads((output / "adapter_config.json").read_text())["modules_to_save"] == ["prior_head"]
    settings = json.loads((output / "miracle_settings.json").read_text())
    assert settings["config"] == {"latent_size": 2, "bow_loss_weight": 0.0, "latent_guidance_scale": 2.0,
                                  "sampler_start_scale": 0.0}
    assert settings["trained_config"]["bow_loss_weight"] == 0.5


def test_shipping_refuses_settings_that_would_change_the_trained_model(ship_default_model, tmp_path):
    with pytest.raises(SystemExit, match="latent_size"):
        ship_default_model.ship(fake_parts(tmp_path / "final"), {"latent_size": 8}, tmp_path / "shipped")
    assert not (tmp_path / "shipped").exists()
