"""Test helpers that write tiny backbones (with real offline tokenizers) to disk."""

from pathlib import Path

import torch
from transformers import BertModel, BertTokenizerFast, GPT2LMHeadModel, LlamaForCausalLM

from modeling_miracle.backbones import load_gpt2_tokenizer, minilm_folder

from .conftest import tiny_decoder_config, tiny_encoder_config

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_DATA = SHARED_DATA / "real"


def save_tiny_backbones(folder: Path, decoder_kind: str = "gpt2", seed: int = 0) -> tuple[str, str]:
    """A tiny random BERT encoder and GPT-2 / Llama decoder with their tokenizers, saved under `folder`."""
    torch.manual_seed(seed)
    encoder_dir, decoder_dir = folder / "encoder", folder / "decoder"
    BertModel(tiny_encoder_config(), add_pooling_layer=False).save_pretrained(encoder_dir)
    BertTokenizerFast.from_pretrained(minilm_folder()).save_pretrained(encoder_dir)
    decoder_class = GPT2LMHeadModel if decoder_kind == "gpt2" else LlamaForCausalLM
    decoder_class(tiny_decoder_config(decoder_kind)).save_pretrained(decoder_dir)
    load_gpt2_tokenizer().save_pretrained(decoder_dir)
    return str(encoder_dir), str(decoder_dir)
