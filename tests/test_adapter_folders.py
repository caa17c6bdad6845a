"""Folders with the backbones by reference (config + PEFT adapter): every `checkpoint-N` and the `adapter/` folder of
a `miracle train --lora` run load on their own (`from_pretrained`, Auto classes, `pipeline(model=path)`,
`load_model_and_processor`), and give the same model as the merged final output; older default-model parts keep
their own loader."""

import json
import shutil

import pytest
from huggingface_hub.errors import StrictDataclassClassValidationError
import torch
from transformers import AutoModelForCausalLM, pipeline

from modeling_miracle import MiracleConfig, MiracleForPersonalizedGeneration, load_model_and_processor
from modeling_miracle.adapter_folders import is_adapter_folder, legacy_settings_file
from modeling_miracle.commands.cli import main as cli
from modeling_miracle.training.data import corpus_files

from .conftest import save_tiny_backbones

CORPUS = {a: corpus_files("train")[a] for a in ("language_style", "attitude")}
CONVERSATIONS = [[{"role": "user", "content": "What do you do on weekends?"}],
                 [{"role": "user", "content": "Do you like rainy days?"}]]
PERSONALITY = {"attitude": "optimistic", "language_style": "lyrical"}


def lora_flags(output_dir, backbones, max_steps=4, *extra):
    return [
        "train", "--encoder", backbones[0], "--decoder", backbones[1],
        "--miracle_config", json.dumps({"latent_size": 8, "head_hidden_size": 8}),
        "--data_files", *(f"{attribute}={path}" for attribute, path in CORPUS.items()),
        "--max_dialogues_per_attribute", "4", "--max_encoder_length", "48", "--max_prompt_length", "48",
        "--max_response_length", "16", "--output_dir", str(output_dir), "--max_steps", str(max_steps),
        "--per_device_train_batch_size", "4", "--learning_rate", "3e-2", "--report_to", "none",
        "--disable_tqdm", "true", "--seed", "0", "--save_steps", "2", "--lora", "true", "--lora_r", "4",
        "--lora_dropout", "0", *extra,
    ]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    backbones = save_tiny_backbones(tmp_path_factory.mktemp("backbones"), decoder_kind="llama")
    output = tmp_path_factory.mktemp("runs") / "lora"
    assert cli(lora_flags(output, backbones)) == 0
    return backbones, output


def logits(model, processor):
    inputs = processor(CONVERSATIONS)
    with torch.no_grad():
        return model(**{k: v for k, v in inputs.items()}, latent=torch.linspace(-1, 1, 16).view(2, 8)).logits


def replies(chat):
    torch.manual_seed(0)
    return [o[0]["generated_text"] for o in chat(CONVERSATIONS, personality=PERSONALITY, max_new_tokens=5)]


def test_every_lora_checkpoint_is_a_loadable_miracle_folder(lora_run):
    backbones, output = lora_run
    final, processor = load_model_and_processor(output)  # the merged, full final model
    expected = logits(final, processor)
    for name in ("checkpoint-2", "checkpoint-4", "adapter"):
        folder = output / name
        assert is_adapter_folder(folder) and not (folder / "model.safetensors").exists()
        config = json.loads((folder / "config.json").read_text())
        assert config["base_model_source"] == {"encoder": backbones[0], "decoder": backbones[1]}
        model, folder_processor = load_model_and_processor(folder)
        assert type(model) is MiracleForPersonalizedGeneration and not model.training
        assert not any("lora_" in n for n, _ in model.named_parameters())  # merged
        close = torch.allclose(logits(model, folder_processor), expected, atol=1e-5)
        assert close is (name != "checkpoint-2"), name  # the last checkpoint and the adapter are the final model
    auto = AutoModelForCausalLM.from_pretrained(output / "checkpoint-4")
    assert torch.allclose(logits(auto.eval(), processor), expected, atol=1e-5)


def test_pipeline_loads_a_checkpoint_by_path(lora_run):
    _, output = lora_run
    chat = pipeline("personalized-dialogue", model=str(output / "checkpoint-4"), device="cpu")
    assert chat.processor.max_prompt_length == 48
    assert replies(chat) == replies(pipeline("personalized-dialogue", model=str(output), device="cpu"))


def test_training_resumes_from_a_lora_checkpoint(lora_run, tmp_path):
    backbones, output = lora_run
    resumed = tmp_path / "resumed"
    shutil.copytree(output / "checkpoint-2", resumed / "checkpoint-2")
    assert cli(lora_flags(resumed, backbones, 4, "--resume_from_checkpoint", "true")) == 0
    first, processor = load_model_and_processor(output / "checkpoint-4")
    again, _ = load_model_and_processor(resumed / "checkpoint-4")
    assert torch.allclose(logits(again, processor), logits(first, processor), atol=1e-4)


def test_a_run_from_a_saved_model_records_it_and_its_checkpoints_load(lora_run, tmp_path):
    backbones, output = lora_run
    saved = tmp_path / "saved"
    shutil.copytree(output, saved, ignore=shutil.ignore_patterns("checkpoint-*", "adapter"))
    flags = lora_flags(tmp_path / "continued", backbones, 2, "--from_model", str(saved), "--add_attribute",
                       "formality=casual,formal", "--train_head_only", "false")
    flags[flags.index("--encoder"):flags.index("--data_files")] = []  # the saved model's backbones and config
    data = flags.index("--data_files")
    flags[data + 1:data + 3] = [f"formality={CORPUS['language_style']}"]
    assert cli(flags) == 0
    checkpoint = tmp_path / "continued" / "checkpoint-2"
    assert json.loads((checkpoint / "config.json").read_text())["base_model_source"] == {"miracle": str(saved)}
    model, processor = load_model_and_processor(checkpoint)
    final, _ = load_model_and_processor(tmp_path / "continued")
    assert list(model.config.attributes) == ["language_style", "attitude", "mental_characteristics", "formality"]
    assert torch.allclose(logits(model, processor), logits(final, processor), atol=1e-5)


def test_folder_kinds_are_told_apart(lora_run, tmp_path):
    _, output = lora_run
    assert not is_adapter_folder(output) and legacy_settings_file(output) is None  # full weights
    legacy = tmp_path / "parts" / "checkpoint-7"
    legacy.mkdir(parents=True)
    shutil.copyfile(output / "adapter" / "adapter_model.safetensors", legacy / "adapter_model.safetensors")
    assert legacy_settings_file(legacy) is None
    (tmp_path / "parts" / "miracle_settings.json").write_text("{}")
    assert legacy_settings_file(legacy) == tmp_path / "parts" / "miracle_settings.json"  # a checkpoint: the parent's
    assert not is_adapter_folder(legacy)


def test_base_model_source_form_is_checked():
    with pytest.raises(StrictDataclassClassValidationError, match="`base_model_source` must name the backbones"):
        MiracleConfig(base_model_source={"encoder": "x"})
    assert MiracleConfig(base_model_source={"miracle": "path"}).base_model_source == {"miracle": "path"}


@pytest.mark.slow
def test_default_model_parts_converted_load_everywhere_with_the_same_replies(tmp_path):
    from modeling_miracle import load_default_model
    from modeling_miracle.adapter_folders import convert_default_model_parts
    from modeling_miracle.default_model import DEFAULT_MODEL_DIR

    old, old_processor = load_default_model()
    expected = replies(pipeline("personalized-dialogue", model=old, processor=old_processor, device="cpu"))
    folder = convert_default_model_parts(DEFAULT_MODEL_DIR, tmp_path / "default")
    assert json.loads((folder / "config.json").read_text())["base_model_source"] == {"encoder": "default",
                                                                                     "decoder": "default"}
    chat = pipeline("personalized-dialogue", model=str(folder), device="cpu")
    assert replies(chat) == expected
    new_state, old_state = chat.model.state_dict(), old.state_dict()
    assert new_state.keys() == old_state.keys() and all(torch.equal(new_state[k], old_state[k]) for k in old_state)
    assert chat.model.generation_config.to_dict() == old.generation_config.to_dict()
