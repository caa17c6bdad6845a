from huggingface_hub import ModelCard
from transformers import TrainingArguments

from modeling_miracle.training.model_card import build_model_card, render_model_card

from .conftest import make_model


def test_card_metadata_names_both_hub_backbones_the_data_and_the_task(tmp_path):
    model = make_model("gpt2")
    model.config.encoder._name_or_path = "sentence-transformers/all-MiniLM-L6-v2"
    model.config.decoder._name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"
    card = build_model_card(model, "someone/miracle", "1,000 dialogues", datasets=["lu-vae/Miracle-Conversation"])
    assert card.data.base_model == ["sentence-transformers/all-MiniLM-L6-v2", "HuggingFaceTB/SmolLM2-135M-Instruct"]
    assert card.data.datasets == ["lu-vae/Miracle-Conversation"]
    assert card.data.library_name == "miracle-dialogue" and card.data.pipeline_tag == "text-generation"
    assert "personalized-dialogue" in card.data.tags
    # The written README.md loads back with the same metadata and keeps the description.
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    assert loaded.data.to_dict() == card.data.to_dict()
    assert "| attitude | pessimistic, optimistic |" in loaded.text and "1,000 dialogues" in loaded.text


def test_local_backbones_are_not_hub_base_models(tmp_path):
    model = make_model("gpt2")
    model.config.encoder._name_or_path = str(tmp_path / "encoder")
    model.config.decoder._name_or_path = "gpt2"
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=0.003, report_to=[])
    text = render_model_card(model, "mine", training_args=args)
    card = ModelCard(text)
    assert card.data.base_model == ["gpt2"] and card.data.datasets is None
    assert "learning_rate: 0.003" in text and 'pipeline("personalized-dialogue", model="mine")' in text
