"""`miracle train` end to end on tiny backbones and the packaged corpus: output folders, seeds, resume, the summary,
and fine-tuning a saved model (new attribute, LoRA), including models saved with a stale GGUF marker."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from modeling_miracle import MiracleForPersonalizedGeneration, MiracleProcessor
from training.cli import main as cli
from training.data import corpus_files

from .helpers import save_tiny_backbones

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
