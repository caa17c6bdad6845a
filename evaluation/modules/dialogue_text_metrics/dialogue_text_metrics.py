"""The text-only metrics of MIRACLE's table 1 as one `evaluate` metric: BLEU (mean of BLEU-1..4), ROUGE (mean of
ROUGE-1/2/L F1), Distinct (mean of Distinct-1/2/3, sentence and corpus level) and self-BLEU, in percent.

    >>> from modeling_miracle.evaluation.modules import load_metric
    >>> load_metric("dialogue_text_metrics").compute(predictions=["I like rain."], references=["I love rain."])
"""

import datasets
import evaluate

from modeling_miracle.evaluation import metrics

_KWARGS = """
Args:
    predictions (`list[str]`): generated responses.
    references (`list[str]`): the reference responses.
    self_bleu_sample (`int`, default 150): responses sampled (fixed seed) for self-BLEU, as in the paper.
Returns:
    bleu, rouge, distinct, self_bleu (`float`, percent).
"""


class DialogueTextMetrics(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__, citation="Lu et al., MIRACLE, Findings of EMNLP 2023.", inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, self_bleu_sample=150):
        predictions = [p if p.strip() else "." for p in predictions]  # an empty response still counts
        return {
            "bleu": metrics.bleu(predictions, references)["bleu"],
            "rouge": metrics.rouge(predictions, references)["rouge"],
            "distinct": metrics.distinct(predictions)["distinct"],
            "self_bleu": metrics.self_bleu(predictions, sample_size=min(self_bleu_sample, len(predictions))),
        }
