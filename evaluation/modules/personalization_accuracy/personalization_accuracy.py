"""Personalization accuracy (MIRACLE, EMNLP 2023 Findings, section 4.2) as an `evaluate` metric: the percent of
generated responses that an attribute's text classifier assigns to the aspect they were generated for.

    >>> from modeling_miracle.evaluation.modules import load_metric
    >>> metric = load_metric("personalization_accuracy")
    >>> metric.compute(predictions=["What a lovely day!"], references=["optimistic"], scorer="runs/scorers/attitude")
    {'personalization_accuracy': 100.0}

`references` are the target aspects, by name (the scorer's `id2label`) or index; `scorer` is the folder of a saved
sequence classifier (as `miracle evaluate` trains) or an object with `predict(texts) -> [label index]`.
"""

import datasets
import evaluate

from modeling_miracle.evaluation.metrics import accuracy

_KWARGS = """
Args:
    predictions (`list[str]`): generated responses.
    references (`list[str | int]`): the aspect each response was generated for (name or index).
    scorer (`str` or object): the attribute's text classifier: a saved folder, or an object with `predict(texts)`.
Returns:
    personalization_accuracy (`float`): percent (0-100) of responses classified as their target aspect.
"""


class PersonalizationAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__, citation="Lu et al., MIRACLE, Findings of EMNLP 2023.", inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, scorer=None):
        if scorer is None:
            raise ValueError("personalization_accuracy needs `scorer=`: the attribute classifier's folder or an object "
                             "with `predict(texts)`.")
        if isinstance(scorer, str):
            from modeling_miracle.evaluation.scorers import SequenceScorer

            scorer = SequenceScorer(scorer)
        targets = [_label_index(scorer, reference) for reference in references]
        return {"personalization_accuracy": accuracy(scorer.predict(list(predictions)), targets)}


def _label_index(scorer, reference: str) -> int:
    if reference.isdigit():
        return int(reference)
    labels = getattr(getattr(getattr(scorer, "model", None), "config", None), "label2id", None) or {}
    if reference not in labels:
        raise ValueError(f"Unknown aspect {reference!r} for this scorer; valid aspects: {sorted(labels, key=labels.get)}.")
    return int(labels[reference])
