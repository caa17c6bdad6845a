import json

import pytest

from modeling_miracle.corpus import CORPUS_DIR, read_jsonl
from modeling_miracle.evaluation.scorers import SequenceScorer, nli_rows, train_attribute_scorer

from .conftest import REAL_DATA, save_tiny_backbones


def test_nli_rows_pair_each_context_with_its_own_and_a_foreign_response(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"input": ["Hi there.", "And then?"], "output": ["Hello friend.", "Then we ate."], "personas": "", "tag": 0},
            {"input": ["Any news?"], "output": ["Nothing new."], "personas": "", "tag": 1}]
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    pairs = nli_rows([str(path)])
    assert len(pairs) == 6 and sum(p["labels"] for p in pairs) == 3
    assert {"text": "Hi there. Hello friend. And then?", "text_pair": "Then we ate.", "labels": 1} in pairs
    for positive, negative in zip(pairs[::2], pairs[1::2]):
        assert negative["text"] == positive["text"] and negative["text_pair"] != positive["text_pair"]


needs_real_data = pytest.mark.skipif(not REAL_DATA.is_dir(), reason="needs ../shared/data/real")


def test_attribute_scorer_trains_saves_and_predicts(tmp_path):
    encoder, _ = save_tiny_backbones(tmp_path)
    validation = str(CORPUS_DIR / "text_attitude.validation.jsonl")
    result = train_attribute_scorer(validation, validation, ["pessimistic", "optimistic"], str(tmp_path / "scorer"),
                                    backbone=encoder, epochs=1)
    saved = json.loads((tmp_path / "scorer" / "scorer.json").read_text())
    assert saved["validation_accuracy"] == result.validation_accuracy
    scorer = SequenceScorer(str(tmp_path / "scorer"))
    assert scorer.model.config.id2label == {0: "pessimistic", 1: "optimistic"}
    # The saved scorer predicts what the trainer evaluated: its accuracy on the validation rows is the reported one.
    rows = read_jsonl(validation)
    predictions = scorer.predict([row["text"] for row in rows], max_length=64)
    correct = sum(p == row["labels"] for p, row in zip(predictions, rows))
    assert result.validation_accuracy == pytest.approx(100 * correct / len(rows))


@needs_real_data
@pytest.mark.slow
def test_minilm_attitude_scorer_is_clearly_above_chance(tmp_path):
    result = train_attribute_scorer(str(REAL_DATA / "text_attitude.train.jsonl"), str(REAL_DATA / "text_attitude.validation.jsonl"),
                                    ["pessimistic", "optimistic"], str(tmp_path / "attitude"), epochs=2)
    print(f"attitude scorer validation accuracy: {result.validation_accuracy:.1f}%")
    assert result.validation_accuracy > 70.0
