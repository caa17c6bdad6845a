import json
from unittest import mock

import pytest

from modeling_miracle.configuration import PAPER_ATTRIBUTES
from modeling_miracle.training import AttributeInterleavedSampler, LoadReport, MalformedRowError, corpus_files, load_miracle_dataset

GOOD = {"input": ["How are you?", "Why so?"], "output": ["I am well today.", "The sun is out."], "personas": "", "tag": 1}


def write(path, rows):
    path.write_text("\n".join(json.dumps(r) if isinstance(r, dict) else r for r in rows) + "\n", encoding="utf-8")
    return str(path)


def test_combines_attribute_files_with_one_example_per_turn(tmp_path):
    style = write(tmp_path / "style.jsonl", [GOOD, {**GOOD, "tag": "plain"}])
    attitude = write(tmp_path / "attitude.jsonl", [{**GOOD, "tag": 0}])
    dataset = load_miracle_dataset({"language_style": style, "attitude": attitude}, PAPER_ATTRIBUTES)
    assert len(dataset) == 6
    first, second = dataset[0], dataset[1]
    assert first["messages"] == [{"role": "user", "content": "How are you?"}]
    assert second["messages"][-1] == {"role": "user", "content": "Why so?"}
    assert second["messages"][1] == {"role": "assistant", "content": "I am well today."}
    assert second["response"] == "The sun is out."
    assert [dataset[i]["aspect_id"] for i in range(4)] == [1, 1, 0, 0]  # "plain" -> 0
    assert dataset[4]["attribute_id"] == 1 and dataset[4]["aspect_id"] == 0
    last_only = load_miracle_dataset({"language_style": style}, PAPER_ATTRIBUTES, expand_prefixes=False)
    assert len(last_only) == 2


@pytest.mark.parametrize(
    "bad, message",
    [
        ({**GOOD, "output": ["only one"]}, "2 input turns but 1 output turns"),
        ({**GOOD, "tag": 2}, "unknown tag 2; valid: 0..1 or one of ['plain', 'lyrical']"),
        ({**GOOD, "tag": "poetic"}, "unknown tag 'poetic'"),
        ({**GOOD, "input": ["How are you?", "  "]}, "empty or non-string turn"),
        ("{not json", "invalid JSON"),
    ],
)
def test_malformed_rows_name_file_and_line_or_are_skipped(tmp_path, bad, message):
    path = write(tmp_path / "style.jsonl", [GOOD, bad, GOOD])
    with pytest.raises(MalformedRowError) as error:
        load_miracle_dataset({"language_style": path}, PAPER_ATTRIBUTES)
    assert f"{path}, line 2 (language_style)" in str(error.value)
    assert message in str(error.value)
    report = LoadReport()
    dataset = load_miracle_dataset({"language_style": path}, PAPER_ATTRIBUTES, skip_malformed=True, report=report)
    assert report.skipped_rows == 1 and report.dialogues == 2 and len(dataset) == 4


def test_data_must_fit_the_config(tmp_path):
    path = write(tmp_path / "x.jsonl", [GOOD])
    with pytest.raises(ValueError, match=r"config attributes: \['language_style'"):
        load_miracle_dataset({"humour": path}, PAPER_ATTRIBUTES)


def test_hub_dataset_takes_the_same_path_as_local_files(tmp_path):
    local = write(tmp_path / "dialogue_l.raw.jsonl", [GOOD, {**GOOD, "tag": 0}])
    expected = load_miracle_dataset({"language_style": local}, PAPER_ATTRIBUTES)
    with mock.patch("huggingface_hub.hf_hub_download", return_value=local) as download:
        from_hub = load_miracle_dataset({"language_style": "dialogue_l.raw.jsonl"}, PAPER_ATTRIBUTES,
                                        hub_dataset="lu-vae/Miracle-Conversation")
    download.assert_called_once_with("lu-vae/Miracle-Conversation", "dialogue_l.raw.jsonl", repo_type="dataset", revision=None)
    assert from_hub.to_list() == expected.to_list()


def test_packaged_corpus_loads_for_the_paper_attributes():
    dataset = load_miracle_dataset(corpus_files("validation"), PAPER_ATTRIBUTES)
    assert set(dataset["attribute_id"]) == {0, 1, 2} and set(dataset["aspect_id"]) == {0, 1}
    with pytest.raises(FileNotFoundError, match="No packaged corpus split"):
        corpus_files("dev")


def test_interleaved_sampler_mixes_attributes_in_every_batch():
    attribute_ids = [0] * 30 + [1] * 30 + [2] * 15
    order = list(AttributeInterleavedSampler(attribute_ids, seed=1))
    assert sorted(order) == list(range(75))
    for start in range(0, 75, 10):
        batch = {attribute_ids[i] for i in order[start:start + 10]}
        assert len(batch) >= 2
    assert order != list(AttributeInterleavedSampler(attribute_ids, seed=2))


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_files_are_refused_naming_the_file(tmp_path, encoding):
    path = tmp_path / "style.jsonl"
    path.write_bytes("\n".join(json.dumps(r) for r in [GOOD, GOOD]).encode(encoding))
    for skip in (False, True):  # skipping cannot help: no row of such a file is readable
        with pytest.raises(MalformedRowError, match=rf"{path} is encoded as UTF-(16|32).*must be UTF-8"):
            load_miracle_dataset({"language_style": str(path)}, PAPER_ATTRIBUTES, skip_malformed=skip)


def test_a_latin1_row_is_a_malformed_row_with_file_and_line(tmp_path):
    path = tmp_path / "style.jsonl"
    latin = json.dumps({**GOOD, "output": ["Très bien.", "Ça va."]}, ensure_ascii=False).encode("latin-1")
    path.write_bytes(b"\n".join([json.dumps(GOOD).encode(), latin, json.dumps(GOOD).encode()]) + b"\n")
    with pytest.raises(MalformedRowError, match=rf"{path}, line 2 \(language_style\): not UTF-8 text \(byte 0xe8"):
        load_miracle_dataset({"language_style": str(path)}, PAPER_ATTRIBUTES)
    report = LoadReport()
    dataset = load_miracle_dataset({"language_style": str(path)}, PAPER_ATTRIBUTES, skip_malformed=True, report=report)
    assert report.skipped_rows == 1 and len(dataset) == 4


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "style.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [{**GOOD, "tag": "lyrical"}, GOOD]) + "\n",
                    encoding="utf-8-sig")
    dataset = load_miracle_dataset({"language_style": str(path)}, PAPER_ATTRIBUTES)
    assert len(dataset) == 4 and dataset[0]["aspect_id"] == 1


def test_no_usable_examples_says_how_many_rows_were_skipped(tmp_path):
    path = write(tmp_path / "style.jsonl", ["{broken", {**GOOD, "tag": 7}])
    with pytest.raises(ValueError, match="No usable examples in .*: all 2 rows were skipped as malformed"):
        load_miracle_dataset({"language_style": path}, PAPER_ATTRIBUTES, skip_malformed=True)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match="No usable examples in .*: 0 rows read"):
        load_miracle_dataset({"language_style": str(empty)}, PAPER_ATTRIBUTES)


@pytest.mark.parametrize("limit", [-1, 0, 2.5, True])
def test_max_dialogues_per_attribute_must_be_positive(tmp_path, limit):
    path = write(tmp_path / "style.jsonl", [GOOD, GOOD])
    with pytest.raises(ValueError, match="`max_dialogues_per_attribute` must be an integer >= 1 or None"):
        load_miracle_dataset({"language_style": path}, PAPER_ATTRIBUTES, max_dialogues_per_attribute=limit)
    report = LoadReport()
    load_miracle_dataset({"language_style": path}, PAPER_ATTRIBUTES, max_dialogues_per_attribute=1, report=report)
    assert report.dialogues == 1 and report.dialogues_per_attribute == {"language_style": 1}


def _epochs_of(loader, epochs=2):
    result = []
    for epoch in range(epochs):
        loader.set_epoch(epoch)  # as the Trainer does before each epoch
        result.append([list(batch) for batch in loader])
    return result


@pytest.mark.parametrize("size", [48, 46])
def test_interleaved_sampler_under_accelerate_sharding(size):
    """What `accelerate launch --num_processes 2` does to the sampler: the Trainer's `accelerator.prepare` wraps it
    in a `BatchSamplerShard` per process (built here directly for process 0 and 1)."""
    from collections import Counter

    from accelerate.data_loader import prepare_data_loader
    from torch.utils.data import DataLoader

    attribute_ids = [i % 3 for i in range(size)]

    def loader(batch_size, processes=1, rank=0):
        plain = DataLoader(list(range(size)), batch_size=batch_size, collate_fn=list,
                           sampler=AttributeInterleavedSampler(attribute_ids, seed=3))
        return prepare_data_loader(plain, num_processes=processes, process_index=rank, put_on_device=False)

    ranks = [_epochs_of(loader(4, 2, rank)) for rank in (0, 1)]
    single = _epochs_of(loader(8))
    for epoch in range(2):
        first, second = ranks[0][epoch], ranks[1][epoch]
        assert len(first) == len(second) == 6  # the same number of steps in both processes
        seen = Counter(i for batch in first + second for i in batch)
        if size % 8 == 0:
            assert seen == Counter(range(size))  # every example exactly once
        else:
            assert set(seen) == set(range(size)) and sum(seen.values()) == 48
            padding = [i for i, n in seen.items() if n == 2]
            assert sorted(padding) == sorted(single[epoch][0][: 48 - size])  # completed from the epoch's start
        for step, (a, b) in enumerate(zip(first, second)):
            assert len({attribute_ids[i] for i in a}) >= 2 and len({attribute_ids[i] for i in b}) >= 2
            if len(single[epoch][step]) == 8:
                assert a + b == single[epoch][step]  # one step = one batch of a single process with 2x the batch
    assert ranks[0][0] != ranks[0][1]  # a new order every epoch
