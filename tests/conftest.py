"""Shared fixtures and helpers: tiny random BERT / GPT-2 / Llama models built in-process (and saved to disk as
backbones), real offline tokenizers, small dialogue files, a model whose heads separate the aspects."""

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizerFast, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

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
    path = tmp_path / "formality.json"
    path.write_text(json.dumps(FORMALITY_SPEC), encoding="utf-8")
    return path


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_DATA = SHARED_DATA / "real"


DROPOUT_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "resid_pdrop", "embd_pdrop", "attn_pdrop")


def save_tiny_backbones(folder: Path, decoder_kind: str = "gpt2", seed: int = 0, dropout: bool = True) -> tuple[str, str]:
    """A tiny random BERT encoder and GPT-2 / Llama decoder with their tokenizers, saved under `folder`
    (`dropout=False`: dropout off, so that two training runs differ only where the test wants them to)."""
    torch.manual_seed(seed)
    encoder_dir, decoder_dir = folder / "encoder", folder / "decoder"
    configs = [tiny_encoder_config(), tiny_decoder_config(decoder_kind)]
    for config in configs if not dropout else []:
        for name in DROPOUT_FIELDS:
            if hasattr(config, name):
                setattr(config, name, 0.0)
    BertModel(configs[0], add_pooling_layer=False).save_pretrained(encoder_dir)
    BertTokenizerFast.from_pretrained(minilm_folder()).save_pretrained(encoder_dir)
    decoder_class = GPT2LMHeadModel if decoder_kind == "gpt2" else LlamaForCausalLM
    decoder_class(configs[1]).save_pretrained(decoder_dir)
    load_gpt2_tokenizer().save_pretrained(decoder_dir)
    return str(encoder_dir), str(decoder_dir)


def write_dialogue_files(folder: Path, dialogues_per_attribute: int = 12, turns: int = 2) -> dict[str, str]:
    """Small single-aspect dialogue files in the authors' format for `language_style` and `attitude` (tags
    alternate), every response unique; returns attribute -> path."""
    rng = random.Random(0)
    words = "sun rain garden music book river city friend dinner movie walk coffee train song night morning".split()
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for attribute, tones in (("language_style", ("plainly", "sweetly")), ("attitude", ("sadly", "happily"))):
        rows = []
        for d in range(dialogues_per_attribute):
            tag = d % 2
            rows.append({
                "input": [f"What about the {rng.choice(words)} and the {rng.choice(words)}?" for _ in range(turns)],
                "output": [f"I {tones[tag]} like the {rng.choice(words)} ({attribute} {d}.{t})." for t in range(turns)],
                "personas": "",
                "tag": tag,
            })
        files[attribute] = str(folder / f"{attribute}.jsonl")
        Path(files[attribute]).write_text("".join(json.dumps(row) + "\n" for row in rows))
    return files


PERSONALITY = {"language_style": "lyrical", "attitude": "optimistic", "mental_characteristics": "critical"}
OPPOSITE = {"language_style": "plain", "attitude": "pessimistic", "mental_characteristics": "emotional"}


@pytest.fixture(scope="module")
def separated_model():
    """A tiny model whose heads learned that the sign of latent dim i is attribute i's aspect."""
    model = make_model("gpt2", seed=0)
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(20.0)
    heads = model.attribute_heads
    optimizer = torch.optim.Adam(heads.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):
        z = torch.randn(256, model.config.latent_size, generator=generator)
        loss = sum(
            torch.nn.functional.cross_entropy(logits, (z[:, i] > 0).long())
            for i, logits in enumerate(heads(z).values())
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    # Its heads were trained on N(0, I) everywhere, not on a context's posterior region: no trust radius needed to
    # reach every aspect (the radius has its own tests in test_sampling.py).
    model.config.sampler_max_distance = None
    return model.eval()


def run_cli_as_console_script(argv, cwd):
    """`miracle <argv>` in a fresh interpreter started as the console script: (status, stdout, stderr, loaded)."""
    script = (
        "import sys\n"
        "sys.argv[0] = 'miracle'\n"
        "from modeling_miracle.commands.cli import main\n"
        "try:\n"
        f"    status = main({argv!r})\n"
        "except SystemExit as exit:\n"
        "    status = exit.code\n"
        "print('STATUS', status, 'LOADED', sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=cwd)
    status, loaded = re.search(r"STATUS (\S+) LOADED (\[.*\])", result.stdout).groups()
    return int(status), result.stdout, result.stderr, loaded
