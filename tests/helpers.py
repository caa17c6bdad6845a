"""Test helpers that write tiny backbones (with real offline tokenizers) and small dialogue files to disk."""

import json
import random
from pathlib import Path

import torch
from transformers import BertModel, BertTokenizerFast, GPT2LMHeadModel, LlamaForCausalLM

from modeling_miracle.backbones import load_gpt2_tokenizer, minilm_folder

from .conftest import tiny_decoder_config, tiny_encoder_config

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
