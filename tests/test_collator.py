"""`MiracleDataCollator`: training batches, and decoder-history dropout (the decoder prompt keeps only the last user
turn for a share of examples while the encoders read the whole context)."""

import pytest
import torch

from modeling_miracle.training import MiracleDataCollator

from .conftest import CONVERSATIONS, RESPONSES


def examples():
    return [{"messages": m, "response": r, "attribute_id": i, "aspect_id": 1} for i, (m, r) in enumerate(zip(CONVERSATIONS, RESPONSES))]


def test_history_dropout_off_gives_the_processor_batch(processor):
    batch = MiracleDataCollator(processor)(examples())
    reference = processor(CONVERSATIONS, responses=RESPONSES)
    for key in reference:
        assert torch.equal(batch[key], reference[key])
    assert batch["attribute_ids"].tolist() == [0, 1, 2]


def test_full_history_dropout_shortens_only_the_decoder_prompt(processor):
    batch = MiracleDataCollator(processor, decoder_history_dropout=1.0)(examples())
    full = processor(CONVERSATIONS, responses=RESPONSES)
    last_turn_only = processor([m[-1:] for m in CONVERSATIONS], responses=RESPONSES)
    for key in ("prior_input_ids", "posterior_input_ids"):  # encoders: the whole context
        assert torch.equal(batch[key], full[key])
    for key in ("input_ids", "labels"):  # decoder: the last user turn only
        assert torch.equal(batch[key], last_turn_only[key])
    assert not torch.equal(batch["prior_input_ids"], last_turn_only["prior_input_ids"])


def test_history_dropout_is_seeded_and_partial(processor):
    many = examples() * 20
    first = MiracleDataCollator(processor, decoder_history_dropout=0.5, seed=3)(many)["input_ids"]
    again = MiracleDataCollator(processor, decoder_history_dropout=0.5, seed=3)(many)["input_ids"]
    assert torch.equal(first, again)
    # The multi-turn conversation (index 1 of every 3) keeps its history in some rows and loses it in others.
    lengths = {int(first[i].ne(processor.decoder_tokenizer.pad_token_id).sum()) for i in range(1, len(many), 3)}
    assert len(lengths) == 2


def test_history_dropout_outside_0_1_is_refused(processor):
    with pytest.raises(ValueError, match="decoder_history_dropout"):
        MiracleDataCollator(processor, decoder_history_dropout=1.5)
