"""Shared fixtures: tiny random BERT / GPT-2 / Llama models built in-process, real offline tokenizers."""

import pytest
import torch
from transformers import BertConfig, BertTokenizerFast, GPT2Config, LlamaConfig

import modeling_miracle  # noqa: F401  (registers the model classes)
from modeling_miracle import MiracleConfig, MiracleForPersonalizedGeneration, MiracleProcessor
from modeling_miracle.backbones import load_gpt2_tokenizer, minilm_folder

GPT2_VOCAB = 50257
BERT_VOCAB = 30522
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def tiny_encoder_config():
    return BertConfig(vocab_size=BERT_VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=37, max_position_embeddings=128)


def tiny_decoder_config(kind="gpt2"):
    if kind == "gpt2":
        return GPT2Config(vocab_size=GPT2_VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=256,
                          bos_token_id=50256, eos_token_id=50256)
    if kind == "llama":
        return LlamaConfig(vocab_size=GPT2_VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, intermediate_size=37, max_position_embeddings=256,
                           bos_token_id=50256, eos_token_id=50256, pad_token_id=50256)
    raise ValueError(kind)


def make_config(kind="gpt2", **overrides):
    overrides.setdefault("latent_size", 16)
    overrides.setdefault("head_hidden_size", 16)
    return MiracleConfig(encoder=tiny_encoder_config(), decoder=tiny_decoder_config(kind), **overrides)


def make_model(kind="gpt2", seed=0, **overrides):
    torch.manual_seed(seed)
    return MiracleForPersonalizedGeneration(make_config(kind, **overrides)).eval()


@pytest.fixture(scope="session")
def encoder_tokenizer():
    return BertTokenizerFast.from_pretrained(minilm_folder())


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    return load_gpt2_tokenizer()


@pytest.fixture
def processor(encoder_tokenizer, gpt2_tokenizer):
    import copy

    return MiracleProcessor(copy.deepcopy(encoder_tokenizer), copy.deepcopy(gpt2_tokenizer), max_encoder_length=64,
                            max_prompt_length=96)


@pytest.fixture
def chat_processor(encoder_tokenizer, gpt2_tokenizer):
    import copy

    decoder_tokenizer = copy.deepcopy(gpt2_tokenizer)
    decoder_tokenizer.chat_template = CHAT_TEMPLATE
    return MiracleProcessor(copy.deepcopy(encoder_tokenizer), decoder_tokenizer, max_encoder_length=64,
                            max_prompt_length=96)


CONVERSATIONS = [
    [{"role": "user", "content": "What do you do on weekends?"}],
    [
        {"role": "user", "content": "I just moved to a new town."},
        {"role": "assistant", "content": "Moving takes a lot of energy."},
        {"role": "user", "content": "How should I meet people here?"},
    ],
    [{"role": "user", "content": "Do you like rainy days?"}],
]
RESPONSES = [
    "I usually go hiking with my brother.",
    "Join a club or a class, that works well.",
    "Rain makes the garden happy.",
]


@pytest.fixture
def chat_server():
    """A real chat-completions server on 127.0.0.1 with scripted replies (see tests/chat_server.py)."""
    from .chat_server import ChatServer

    server = ChatServer().start()
    yield server
    server.stop()


FORMALITY_SPEC = {
    "attributes": {
        "formality": {
            "casual": {"manner": ["casually", "in a relaxed, chatty way"], "character": ["a laid-back friend"],
                       "adjective": ["casual", "relaxed"],
                       "examples": [{"post": "How was the trip?", "response": "Pretty cool, we just chilled by the lake all day."}]},
            "formal": {"manner": ["formally", "in a polite, formal register"], "character": ["a courteous professional"],
                       "adjective": ["formal"],
                       "examples": [{"post": "How was the trip?", "response": "It was most pleasant, thank you for asking."}]},
        },
    },
}


@pytest.fixture
def formality_file(tmp_path):
    """A user's attributes file (JSON) with one new attribute."""
    import json

    path = tmp_path / "formality.json"
    path.write_text(json.dumps(FORMALITY_SPEC), encoding="utf-8")
    return path
