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


def test_train_default_model_writes_to_a_run_folder_unless_told_to_replace_the_shipped_one(train_default_model, tmp_path,
                                                                                            monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = train_default_model.parse_args([])
    assert args.output == Path("runs/default_model/model") and args.output.resolve() != DEFAULT_MODEL_DIR.resolve()
    with pytest.raises(SystemExit):
        train_default_model.parse_args(["--output", str(DEFAULT_MODEL_DIR)])
    assert "pass --replace-shipped-model" in capsys.readouterr().err
    assert train_default_model.parse_args(["--replace-shipped-model"]).output == DEFAULT_MODEL_DIR.resolve()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "adapter_model.safetensors").write_text("earlier run")
    with pytest.raises(SystemExit):
        train_default_model.parse_args(["--output", "mine"])
    assert "is not empty: pass --overwrite" in capsys.readouterr().err
    assert train_default_model.parse_args(["--output", "mine", "--overwrite"]).output == Path("mine")


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
