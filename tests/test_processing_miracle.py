import pytest

from modeling_miracle import MiracleProcessor

from .conftest import CONVERSATIONS, RESPONSES


def test_generation_inputs_are_left_padded_prompts(processor):
    batch = processor(CONVERSATIONS)
    assert set(batch) == {"input_ids", "attention_mask", "prior_input_ids", "prior_attention_mask"}
    text = processor.decoder_tokenizer.decode(batch["input_ids"][1][batch["attention_mask"][1].bool()])
    assert text == ("User: I just moved to a new town.\nAssistant: Moving takes a lot of energy.\n"
                    "User: How should I meet people here?\nAssistant:")
    assert batch["attention_mask"][0, 0] == 0 and batch["attention_mask"][:, -1].all()
    context = processor.encoder_tokenizer.decode(batch["prior_input_ids"][1], skip_special_tokens=False)
    assert "[SEP] moving takes a lot of energy. [SEP]" in context


def test_training_labels_cover_only_the_response_and_eos(processor):
    batch = processor(CONVERSATIONS, responses=RESPONSES)
    tokenizer = processor.decoder_tokenizer
    for row, response in enumerate(RESPONSES):
        labels = batch["labels"][row]
        kept = labels[labels != -100].tolist()
        assert kept[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(kept[:-1]) == " " + response
        # labels equal the inputs where kept
        assert (batch["input_ids"][row][labels != -100] == labels[labels != -100]).all()
    posterior = processor.encoder_tokenizer.decode(batch["posterior_input_ids"][0], skip_special_tokens=True)
    assert posterior == "what do you do on weekends? i usually go hiking with my brother."


def test_chat_template_is_used_when_the_decoder_tokenizer_has_one(chat_processor):
    batch = chat_processor(CONVERSATIONS[:1], responses=RESPONSES[:1])
    text = chat_processor.decoder_tokenizer.decode(batch["input_ids"][0])
    assert text == "<|user|>What do you do on weekends?<|endoftext|><|assistant|>I usually go hiking with my brother.<|endoftext|>"


def test_accepts_single_conversations_in_every_form(processor):
    single = processor("What do you do on weekends?")
    assert single["input_ids"].shape[0] == 1
    turns = processor(["I just moved to a new town.", "Moving takes a lot of energy.", "How should I meet people here?"])
    messages = processor(CONVERSATIONS[1])
    assert turns["input_ids"].tolist() == messages["input_ids"].tolist()


def test_long_history_is_cut_from_the_oldest_turn(processor):
    history = []
    for i in range(12):
        history += [f"Old question number {i} about many long and winding things?", f"Old answer number {i} with detail."]
    history.append("What is the newest question?")
    kept = processor.truncate_history([{"role": "user" if i % 2 == 0 else "assistant", "content": t}
                                       for i, t in enumerate(history)])
    assert kept[-1]["content"] == "What is the newest question?"
    assert 1 < len(kept) < len(history)
    batch = processor(history)
    assert batch["prior_input_ids"].shape[1] <= processor.max_encoder_length
    assert "newest question" in processor.decoder_tokenizer.decode(batch["input_ids"][0])


def test_a_newest_turn_too_long_alone_is_an_error(processor):
    with pytest.raises(ValueError, match="newest user turn alone does not fit"):
        processor(" ".join(["word"] * 200))


@pytest.mark.parametrize(
    "bad, message",
    [
        ([], "non-empty"),
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], "must end with a user turn"),
        ([{"role": "robot", "content": "hi"}], "valid roles"),
        ([{"role": "user", "content": "  "}], "Empty"),
    ],
)
def test_bad_conversations_name_what_is_valid(processor, bad, message):
    with pytest.raises(ValueError, match=message):
        processor(bad)


def test_responses_must_match_the_conversations(processor):
    with pytest.raises(ValueError, match="3 conversations but 2 responses"):
        processor(CONVERSATIONS, responses=RESPONSES[:2])


def test_save_and_load_round_trip(chat_processor, tmp_path):
    chat_processor.save_pretrained(tmp_path)
    loaded = MiracleProcessor.from_pretrained(tmp_path)
    assert loaded.max_prompt_length == chat_processor.max_prompt_length
    assert loaded.uses_chat_template
    assert loaded(CONVERSATIONS)["input_ids"].tolist() == chat_processor(CONVERSATIONS)["input_ids"].tolist()
    with pytest.raises(OSError, match="not a saved MiracleProcessor"):
        MiracleProcessor.from_pretrained(tmp_path / "encoder_tokenizer")
