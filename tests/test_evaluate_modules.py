"""The `evaluate` modules shipped in the package: loaded from their local paths, equal to `evaluation.metrics`."""

import pytest

from modeling_miracle.evaluation import metrics
from modeling_miracle.evaluation.modules import NAMES, load_metric, module_path


class FixedScorer:
    """Stands in for a trained classifier: returns set predictions (the metric's own code path runs unchanged)."""

    class model:  # noqa: N801 - mirrors a transformers model's `.config.label2id`
        class config:  # noqa: N801
            label2id = {"pessimistic": 0, "optimistic": 1}

    def __init__(self, labels):
        self.labels = labels

    def predict(self, texts):
        assert len(texts) == len(self.labels)
        return self.labels


def test_personalization_accuracy_counts_responses_classified_as_their_target():
    metric = load_metric("personalization_accuracy")
    result = metric.compute(predictions=["a", "b", "c", "d"], references=["optimistic", "pessimistic", "1", "0"],
                            scorer=FixedScorer([1, 1, 1, 1]))
    assert result == {"personalization_accuracy": 50.0}
    with pytest.raises(ValueError, match=r"valid aspects: \['pessimistic', 'optimistic'\]"):
        metric.compute(predictions=["a"], references=["grumpy"], scorer=FixedScorer([0]))
    with pytest.raises(ValueError, match="needs `scorer=`"):
        metric.compute(predictions=["a"], references=["optimistic"])


def test_personalization_accuracy_loads_a_saved_scorer(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    from modeling_miracle.backbones import minilm_folder
    from modeling_miracle.evaluation.scorers import SequenceScorer

    config = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, num_labels=2, id2label={0: "pessimistic", 1: "optimistic"},
                        label2id={"pessimistic": 0, "optimistic": 1})
    BertForSequenceClassification(config).save_pretrained(tmp_path)
    BertTokenizerFast.from_pretrained(minilm_folder()).save_pretrained(tmp_path)
    texts = ["What a lovely day!", "Nothing ever works.", "Rain again."]
    expected = metrics.accuracy(SequenceScorer(str(tmp_path)).predict(texts), [1, 0, 0])
    result = load_metric("personalization_accuracy").compute(
        predictions=texts, references=["optimistic", "pessimistic", "pessimistic"], scorer=str(tmp_path))
    assert result["personalization_accuracy"] == pytest.approx(expected)


def test_dialogue_text_metrics_equal_the_package_functions():
    predictions = ["I like the rain a lot.", "The sun is out today.", "We walked by the river."]
    references = ["I love the rain.", "It is sunny today.", "We went for a walk by the river."]
    result = load_metric("dialogue_text_metrics").compute(predictions=predictions, references=references)
    assert result == pytest.approx({
        "bleu": metrics.bleu(predictions, references)["bleu"],
        "rouge": metrics.rouge(predictions, references)["rouge"],
        "distinct": metrics.distinct(predictions)["distinct"],
        "self_bleu": metrics.self_bleu(predictions, sample_size=3),
    })


def test_unknown_module_names_the_shipped_ones():
    assert set(NAMES) == {"personalization_accuracy", "dialogue_text_metrics"}
    with pytest.raises(ValueError, match="shipped metrics"):
        module_path("bleurt")
