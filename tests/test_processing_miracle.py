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


def reference_truncation(processor, messages, strict=True):
    """The plain rule the processor implements: the longest suffix of turns that fits both limits."""
    system = [m for m in messages if m["role"] == "system"]
    turns = [m for m in messages if m["role"] != "system"]
    for start in range(len(turns)):
        candidate = system + turns[start:]
        if processor._fits(candidate):
            return candidate
    if not strict:
        return system + turns[-1:]
    return None


def random_history(rng, turns, words=(1, 40), system=False):
    vocabulary = "the quick brown fox jumps over a lazy dog while singing loudly, doesn't it? yes!".split()
    texts = [" ".join(rng.choice(vocabulary) for _ in range(rng.randint(*words))) for _ in range(turns)]
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(texts)]
    return ([{"role": "system", "content": "Be kind."}] if system else []) + messages


@pytest.mark.parametrize("which", ["processor", "chat_processor"])
def test_truncation_keeps_the_longest_suffix_that_fits(which, request):
    import random

    processor = request.getfixturevalue(which)
    rng = random.Random(0)
    for trial in range(40):
        messages = random_history(rng, 2 * rng.randint(0, 15) + 1, words=(1, rng.choice([5, 30, 80])),
                                  system=trial % 3 == 0)
        expected = reference_truncation(processor, messages, strict=False)
        assert processor.truncate_history(messages, strict=False) == expected


@pytest.mark.parametrize("guess", ["oldest", "middle", "newest"])
def test_truncation_corrects_a_wrong_estimate_in_either_direction(processor, monkeypatch, guess):
    import random

    rng = random.Random(2)
    for _ in range(10):
        messages = random_history(rng, 2 * rng.randint(1, 12) + 1, words=(1, 30))
        turns = len(messages)
        start = {"oldest": 0, "middle": turns // 2, "newest": turns - 1}[guess]
        monkeypatch.setattr(processor, "_estimated_start", lambda system, turns_: start)
        assert processor.truncate_history(messages, strict=False) == reference_truncation(processor, messages, strict=False)


class CountingTokenizer:
    """Delegates to a tokenizer and counts the characters it was asked to tokenize."""

    def __init__(self, tokenizer):
        self.tokenizer, self.characters = tokenizer, 0

    def __call__(self, text, *args, **kwargs):
        for item in [text, *args]:
            if item is not None:
                self.characters += sum(map(len, [item] if isinstance(item, str) else item))
        return self.tokenizer(text, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


@pytest.mark.parametrize("which", ["processor", "chat_processor"])
def test_a_100k_word_history_is_cut_in_well_under_a_second(which, request):
    import random
    import time

    processor = request.getfixturevalue(which)
    messages = random_history(random.Random(1), 1001, words=(20, 200))
    messages[-1]["content"] = "So what do you make of all that?"
    assert sum(len(m["content"].split()) for m in messages) > 100_000
    start = time.process_time()
    batch = processor(messages)
    assert time.process_time() - start < 1.0
    kept = processor.truncate_history(messages)
    assert kept[-1] == messages[-1] and len(kept) < len(messages)
    assert processor.decoder_tokenizer.decode(batch["input_ids"][0]).count("what do you make of all that?") == 1
    # The work follows the kept context, not the history: only a small part of the history is ever tokenized.
    processor.encoder_tokenizer = CountingTokenizer(processor.encoder_tokenizer)
    processor.decoder_tokenizer = CountingTokenizer(processor.decoder_tokenizer)
    processor.truncate_history(messages)
    history = sum(len(m["content"]) for m in messages)
    assert processor.encoder_tokenizer.characters + processor.decoder_tokenizer.characters < history / 20


def test_missing_or_incomplete_saved_processors_are_named(processor, tmp_path):
    with pytest.raises(FileNotFoundError, match="No folder '.*does-not-exist'"):
        MiracleProcessor.from_pretrained(tmp_path / "does-not-exist")
    with pytest.raises(OSError, match="neither a local folder nor a Hub repository id"):
        MiracleProcessor.from_pretrained("not a repo/id!")
    from unittest import mock

    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = LocalEntryNotFoundError("cannot reach the Hub")  # what an offline machine gets
    with mock.patch("huggingface_hub.hf_hub_download", side_effect=offline):
        with pytest.raises(OSError, match="'someone/miracle' is not a local folder, and its processor_config.json could not"):
            MiracleProcessor.from_pretrained("someone/miracle")
    processor.save_pretrained(tmp_path / "saved")
    import shutil

    shutil.rmtree(tmp_path / "saved" / "encoder_tokenizer")
    with pytest.raises(OSError, match=r"incomplete saved MiracleProcessor: encoder_tokenizer/ missing"):
        MiracleProcessor.from_pretrained(tmp_path / "saved")


def test_bad_saved_limits_are_named_with_the_file(processor, tmp_path):
    import json

    processor.save_pretrained(tmp_path)
    path = tmp_path / "processor_config.json"
    saved = json.loads(path.read_text())
    for setting, value in (("max_prompt_length", None), ("max_response_length", -4), ("max_encoder_length", 0),
                           ("max_prompt_length", "96")):
        path.write_text(json.dumps({**saved, setting: value}))
        with pytest.raises(ValueError, match=rf"processor_config.json: `{setting}` must be an integer >= 1"):
            MiracleProcessor.from_pretrained(tmp_path)
    path.write_text(json.dumps({**saved, "max_prompt_length": None, "max_promt_length": 3}))
    with pytest.raises(ValueError, match=r"unknown processor setting\(s\) \['max_promt_length'\]"):
        MiracleProcessor.from_pretrained(tmp_path)
    path.write_text(json.dumps({**saved, "max_prompt_length": None}))
    assert MiracleProcessor.from_pretrained(tmp_path, max_prompt_length=64).max_prompt_length == 64  # an override fixes it


def test_limits_are_checked_when_building(encoder_tokenizer, gpt2_tokenizer):
    import numpy as np

    with pytest.raises(ValueError, match="`max_prompt_length` must be an integer >= 1"):
        MiracleProcessor(encoder_tokenizer, gpt2_tokenizer, max_prompt_length=None)
    built = MiracleProcessor(encoder_tokenizer, gpt2_tokenizer, max_prompt_length=np.int64(64))
    assert type(built.max_prompt_length) is int


def test_auto_processor_loads_a_saved_miracle_folder(processor, tmp_path):
    from transformers import AutoProcessor

    from .conftest import make_model

    make_model("gpt2").save_pretrained(tmp_path)
    processor.max_response_length = 17
    processor.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, MiracleProcessor)
    assert loaded.to_dict() == processor.to_dict()
    assert loaded(CONVERSATIONS)["input_ids"].tolist() == processor(CONVERSATIONS)["input_ids"].tolist()


def save_in_the_old_format(processor, folder):
    """A folder as MIRACLE saved processors before `MiracleProcessor` became a `ProcessorMixin`."""
    import json

    processor.encoder_tokenizer.save_pretrained(folder / "encoder_tokenizer")
    processor.decoder_tokenizer.save_pretrained(folder / "decoder_tokenizer")
    settings = {"processor_class": "MiracleProcessor", "max_encoder_length": processor.max_encoder_length,
                "max_prompt_length": processor.max_prompt_length, "max_response_length": processor.max_response_length}
    (folder / "miracle_processor.json").write_text(json.dumps(settings, indent=2))


@pytest.mark.parametrize("which", ["processor", "chat_processor"])
def test_an_old_format_folder_loads_and_gives_identical_tensors(which, request, tmp_path):
    processor = request.getfixturevalue(which)
    processor.max_prompt_length, processor.max_response_length = 61, 9
    save_in_the_old_format(processor, tmp_path)
    loaded = MiracleProcessor.from_pretrained(tmp_path)
    assert (loaded.max_encoder_length, loaded.max_prompt_length, loaded.max_response_length) == (
        processor.max_encoder_length, 61, 9)
    assert loaded.uses_chat_template == processor.uses_chat_template
    expected = processor(CONVERSATIONS, responses=RESPONSES)
    got = loaded(CONVERSATIONS, responses=RESPONSES)
    assert sorted(got.keys()) == sorted(expected.keys())
    for key in expected:
        assert got[key].tolist() == expected[key].tolist(), key
    assert MiracleProcessor.from_pretrained(tmp_path, max_prompt_length=33).max_prompt_length == 33
    # Saving an old folder again writes the new format, which wins over the old settings file.
    loaded.max_response_length = 12
    loaded.save_pretrained(tmp_path)
    assert (tmp_path / "processor_config.json").is_file()
    assert MiracleProcessor.from_pretrained(tmp_path).max_response_length == 12


def test_save_writes_the_processor_mixin_layout_and_round_trips(processor, tmp_path):
    import json

    from transformers import ProcessorMixin

    assert isinstance(processor, ProcessorMixin)
    assert MiracleProcessor.get_attributes() == ["encoder_tokenizer", "decoder_tokenizer"]
    processor.max_response_length = 23
    processor.save_pretrained(tmp_path)
    assert not (tmp_path / "miracle_processor.json").exists()
    settings = json.loads((tmp_path / "processor_config.json").read_text())
    assert settings == {"processor_class": "MiracleProcessor", "max_encoder_length": processor.max_encoder_length,
                        "max_prompt_length": processor.max_prompt_length, "max_response_length": 23}
    for folder in ("encoder_tokenizer", "decoder_tokenizer"):
        assert (tmp_path / folder / "tokenizer_config.json").is_file()
    loaded = MiracleProcessor.from_pretrained(tmp_path)
    assert loaded.to_dict() == processor.to_dict()
    assert type(loaded.encoder_tokenizer) is type(processor.encoder_tokenizer)
    expected = processor(CONVERSATIONS, responses=RESPONSES)
    got = loaded(CONVERSATIONS, responses=RESPONSES)
    for key in expected:
        assert got[key].tolist() == expected[key].tolist(), key
    # the limits override the file but never reach the tokenizers' saved settings
    overridden = MiracleProcessor.from_pretrained(tmp_path, max_prompt_length=40)
    assert overridden.max_prompt_length == 40
    assert "max_prompt_length" not in overridden.decoder_tokenizer.init_kwargs


def test_auto_processor_loads_an_old_format_folder(processor, tmp_path):
    from transformers import AutoProcessor

    from .conftest import make_model

    make_model("gpt2").save_pretrained(tmp_path)
    processor.max_response_length = 17
    save_in_the_old_format(processor, tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, MiracleProcessor) and loaded.max_response_length == 17
    assert loaded(CONVERSATIONS)["input_ids"].tolist() == processor(CONVERSATIONS)["input_ids"].tolist()
