import json
import warnings
from pathlib import Path
from unittest import mock

import pytest
import torch

from modeling_miracle import MiracleForPersonalizedGeneration, MiracleProcessor
from modeling_miracle.training import MiracleTrainer, load_miracle_dataset
from modeling_miracle.commands.cli import main


def cli(argv):
    """The CLI with `--debug`: a mistake raises its exception (without it: one line on stderr, status 2)."""
    return main(["--debug", *argv])
from modeling_miracle.corpus import CORPUS_DIR
from modeling_miracle.training.new_attribute import prepare_new_attribute

from .conftest import save_tiny_backbones

# The packaged corpus: these tests run wherever the package is installed (no ../shared needed).
DATA = CORPUS_DIR
TWO_ATTRIBUTES = {"language_style": ["plain", "lyrical"], "attitude": ["pessimistic", "optimistic"]}


def train_flags(encoder, decoder, output_dir, max_steps, *extra):
    return [
        "train", "--encoder", encoder, "--decoder", decoder,
        "--attributes", json.dumps(TWO_ATTRIBUTES),
        "--miracle_config", json.dumps({"latent_size": 16, "head_hidden_size": 16}),
        "--data_files", f"language_style={DATA / 'dialogue_language_style.train.jsonl'}",
        f"attitude={DATA / 'dialogue_attitude.train.jsonl'}",
        "--max_dialogues_per_attribute", "60",
        "--max_encoder_length", "64", "--max_prompt_length", "64", "--max_response_length", "32",
        "--output_dir", str(output_dir), "--max_steps", str(max_steps), "--per_device_train_batch_size", "8",
        "--learning_rate", "3e-3", "--logging_steps", "5", "--save_steps", "20", "--report_to", "none",
        "--disable_tqdm", "true", "--seed", "0", *extra,
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    encoder, decoder = save_tiny_backbones(folder)
    output = folder / "out"
    assert cli(train_flags(encoder, decoder, output, 40)) == 0
    return encoder, decoder, output


def test_cli_training_lowers_the_loss_and_saves_a_model_that_generates(trained):
    _, _, output = trained
    state = json.loads((output / "checkpoint-40" / "trainer_state.json").read_text())
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert len(losses) == 8 and losses[-1] < losses[0] - 1.0
    components = [entry for entry in state["log_history"] if "reconstruction_loss" in entry]
    assert components and {"kl_loss", "classification_loss", "distance_loss", "kl_beta"} <= set(components[0])
    model = MiracleForPersonalizedGeneration.from_pretrained(output).eval()
    processor = MiracleProcessor.from_pretrained(output)
    inputs = processor(["What do you do on weekends?"])
    out = model.generate(**inputs, personality={"attitude": "optimistic"}, max_new_tokens=5)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 5
    card = (output / "README.md").read_text()
    assert "| attitude | pessimistic, optimistic |" in card and "learning_rate: 0.003" in card


def test_resume_from_checkpoint_continues_the_run(trained, tmp_path):
    encoder, decoder, output = trained
    resumed = tmp_path / "resumed"
    import shutil

    shutil.copytree(output / "checkpoint-20", resumed / "checkpoint-20")
    assert cli(train_flags(encoder, decoder, resumed, 40, "--resume_from_checkpoint", str(resumed / "checkpoint-20"))) == 0
    state = json.loads((resumed / "checkpoint-40" / "trainer_state.json").read_text())
    steps = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert steps == [5, 10, 15, 20, 25, 30, 35, 40]  # the first four come from the checkpoint
    original = json.loads((output / "checkpoint-40" / "trainer_state.json").read_text())
    assert state["log_history"][-2]["loss"] == pytest.approx(original["log_history"][-2]["loss"], rel=0.05)


def test_push_to_hub_uploads_model_processor_and_card(trained, tmp_path):
    encoder, decoder, _ = trained
    uploads = []

    class FakeHub:
        def create_repo(self, repo_id, **kwargs):
            return mock.Mock(repo_id=repo_id)

        def upload_folder(self, repo_id, folder_path, **kwargs):
            files = sorted(str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*") if p.is_file())
            uploads.append((repo_id, files, (Path(folder_path) / "README.md").read_text()))
            return mock.Mock()

    with mock.patch("transformers.trainer.hf_api", return_value=FakeHub()):
        cli(train_flags(encoder, decoder, tmp_path / "pushed", 4, "--push_to_hub", "true", "--hub_model_id",
                        "someone/miracle-tiny", "--save_strategy", "no"))
    repo_id, files, card = uploads[-1]
    assert repo_id == "someone/miracle-tiny"
    for name in ("model.safetensors", "config.json", "processor_config.json", "encoder_tokenizer/tokenizer.json",
                 "decoder_tokenizer/tokenizer_config.json", "README.md"):
        assert name in files
    assert "# someone/miracle-tiny" in card and "| language_style | plain, lyrical |" in card
    assert "dialogue_attitude.train.jsonl" in card


def test_new_attribute_head_only_training(trained, tmp_path):
    _, _, output = trained
    model = MiracleForPersonalizedGeneration.from_pretrained(output)
    processor = MiracleProcessor.from_pretrained(output)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    collator = prepare_new_attribute(model, processor, "formality", ["casual", "formal"])
    assert model.config.attributes["formality"] == ["casual", "formal"]
    # New single-aspect data: reuse the language-style files with their tags as the new attribute's aspects.
    data = load_miracle_dataset({"formality": str(DATA / "dialogue_language_style.validation.jsonl")},
                                model.config.attributes, max_dialogues_per_attribute=40)
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path / "head"), max_steps=40, per_device_train_batch_size=16,
                             learning_rate=3e-2, report_to=[], disable_tqdm=True,
                             save_strategy="no")
    MiracleTrainer(model=model, args=args, train_dataset=data, data_collator=collator).train()
    for name, tensor in before.items():
        assert torch.equal(dict(model.named_parameters())[name], tensor), name  # byte for byte
    model.eval().save_pretrained(tmp_path / "with_formality")
    reloaded = MiracleForPersonalizedGeneration.from_pretrained(tmp_path / "with_formality").eval()
    assert list(reloaded.config.attributes) == ["language_style", "attitude", "formality"]
    inputs = processor(["What do you do on weekends?", ["How are you?", "Fine.", "Anything new?"], "Tell me a story."])
    result = reloaded.sample_latent(inputs["prior_input_ids"], inputs["prior_attention_mask"],
                                    personality={"formality": "formal"}, generator=torch.Generator().manual_seed(0))
    assert (result.aspect_probability_after[:, 2] > result.aspect_probability_before[:, 2] + 0.01).all()


def test_lora_trains_adapters_and_miracle_layers_then_reloads(tmp_path):
    from modeling_miracle.training.peft_utils import apply_lora, load_lora

    from .conftest import make_model

    for kind in ("gpt2", "llama"):
        base = make_model(kind, attributes=TWO_ATTRIBUTES)
        base.save_pretrained(tmp_path / f"base-{kind}")
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)  # PEFT reads a deprecated transformers property
            peft_model = apply_lora(base, r=4, lora_alpha=8)
        trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
        assert any("lora_A" in n and ".decoder." in n for n in trainable)
        assert any("attribute_heads" in n for n in trainable) and any("latent_injection" in n for n in trainable)
        assert not any("prior_encoder" in n for n in trainable)
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_B" in name or "attribute_heads" in name:
                    p.add_(0.05)
        peft_model.eval().save_pretrained(tmp_path / f"adapter-{kind}")
        latent = torch.ones(1, 16)
        ids = torch.tensor([[464, 3290, 318]])
        expected = peft_model(input_ids=ids, latent=latent).logits
        reloaded = load_lora(MiracleForPersonalizedGeneration.from_pretrained(tmp_path / f"base-{kind}"), str(tmp_path / f"adapter-{kind}")).eval()
        assert torch.allclose(reloaded(input_ids=ids, latent=latent).logits, expected, atol=1e-5)
        generated = reloaded.generate(input_ids=ids, latent=latent, max_new_tokens=3, pad_token_id=50256)
        assert generated.shape == (1, 6)


def test_trainer_sets_what_miracle_needs_itself(tmp_path, processor):
    from transformers import TrainingArguments

    from modeling_miracle.training import MiracleDataCollator, corpus_files

    from .conftest import make_model

    args = TrainingArguments(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4, report_to=[],
                             disable_tqdm=True, save_strategy="no")
    assert args.remove_unused_columns and args.dataloader_pin_memory  # the Trainer's defaults
    model = make_model("gpt2")
    data = load_miracle_dataset(corpus_files("train"), model.config.attributes, max_dialogues_per_attribute=2)
    trainer = MiracleTrainer(model=model, args=args, train_dataset=data, processing_class=processor)
    assert trainer.args.remove_unused_columns is False
    assert isinstance(trainer.data_collator, MiracleDataCollator) and trainer.data_collator.processor is processor
    assert trainer.args.dataloader_pin_memory is (args.device.type != "cpu")
    before = model.attribute_heads.heads["attitude"][0].weight.detach().clone()
    assert trainer.train().global_step == 1
    assert not torch.equal(model.attribute_heads.heads["attitude"][0].weight, before)
