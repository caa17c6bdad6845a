"""Automatic evaluation metrics of MIRACLE (paper section 4.2 and appendix C.3).

Every score is returned as a percentage (0-100), like the paper's tables, except perplexity.

- Personalization: per-attribute accuracy of attribute classifiers on the generated responses, and their average
  (`accuracy`, `personalization_scores`).
- Coherence: BLEU-1/2/3/4 with NLTK and their mean (`bleu`); ROUGE-1/2/L F1 with `rouge-score` and their mean
  (`rouge`); share of responses an NLI classifier judges consistent with the context (`nli_coherence`).
- Fluency: perplexity of the responses under a causal LM (GPT2-XL in the paper), exp(mean token NLL) (`perplexity`).
- Diversity: Distinct-1/2/3 at sentence and corpus level and the mean of the six values (`distinct`); self-BLEU on a
  fixed-seed sample of responses (150 in the paper) (`self_bleu`).

BLEU, Distinct and self-BLEU share one tokenizer, `tokenize` (lower-cased words and punctuation marks by a regex;
no NLTK data is needed). ROUGE uses `rouge-score`'s own tokenizer, as the package does by default.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "BLEU_WEIGHTS",
    "accuracy",
    "bleu",
    "distinct",
    "ngrams",
    "nli_coherence",
    "perplexity",
    "personalization_scores",
    "rouge",
    "self_bleu",
    "tokenize",
]

# Standard cumulative BLEU-n weights (uniform over 1..n-gram precisions).
BLEU_WEIGHTS = {
    1: (1.0, 0.0, 0.0, 0.0),
    2: (0.5, 0.5, 0.0, 0.0),
    3: (1 / 3, 1 / 3, 1 / 3, 0.0),
    4: (0.25, 0.25, 0.25, 0.25),
}
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")

# A word (letters/digits/underscore, keeping inner apostrophes: "don't") or one punctuation / symbol character.
_TOKEN_RE = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


# ----------------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------------


def tokenize(text: str) -> list[str]:
    """Lower-cased words and punctuation marks: `"Don't stop, OK?"` -> `["don't", "stop", ",", "ok", "?"]`."""
    if not isinstance(text, str):
        raise TypeError(f"Expected a string, got {type(text).__name__}.")
    return _TOKEN_RE.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """All contiguous n-grams of a token list (empty when it has fewer than n tokens)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def _check_non_empty(values: Sequence[Any], name: str) -> None:
    if isinstance(values, str):
        raise TypeError(f"{name} must be a list, not a single string.")
    if len(values) == 0:
        raise ValueError(f"{name} must not be empty.")


def _check_pair(first: Sequence[Any], second: Sequence[Any], first_name: str, second_name: str) -> None:
    _check_non_empty(first, first_name)
    _check_non_empty(second, second_name)
    if len(first) != len(second):
        raise ValueError(
            f"{first_name} and {second_name} must have the same length, "
            f"got {len(first)} {first_name} and {len(second)} {second_name}."
        )


def _check_texts(texts: Sequence[Any], name: str) -> None:
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{name}[{i}] must be a string, got {type(text).__name__}.")


def _reference_lists(references: Sequence[str | Sequence[str]]) -> list[list[str]]:
    """Each item as a non-empty list of reference strings (one string = one reference)."""
    out = []
    for i, ref in enumerate(references):
        refs = [ref] if isinstance(ref, str) else list(ref)
        if not refs:
            raise ValueError(f"references[{i}] must hold at least one reference.")
        _check_texts(refs, f"references[{i}]")
        out.append(refs)
    return out


def _smoothing():
    from nltk.translate.bleu_score import SmoothingFunction

    # method1: a zero n-gram match count is replaced by epsilon=0.1 (Chen & Cherry, 2014), so that short sentences
    # with no higher-order match do not zero the whole score. Same choice as Texygen's self-BLEU.
    return SmoothingFunction().method1


# ----------------------------------------------------------------------------------------------------------------
# Coherence: word overlap with the reference (golden) responses
# ----------------------------------------------------------------------------------------------------------------


def bleu(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> dict[str, float]:
    """Corpus BLEU-1..4 (NLTK `corpus_bleu`, cumulative weights, smoothing `method1`) and their mean, in percent.

    `references[i]` is one reference string or a list of references for `predictions[i]`.
    Returns `{"bleu-1", "bleu-2", "bleu-3", "bleu-4", "bleu"}` where "bleu" is the mean of the four.
    """
    from nltk.translate.bleu_score import corpus_bleu

    _check_pair(predictions, references, "predictions", "references")
    _check_texts(predictions, "predictions")
    hypotheses = [tokenize(p) for p in predictions]
    list_of_references = [[tokenize(r) for r in refs] for refs in _reference_lists(references)]
    smoothing = _smoothing()
    scores = {
        f"bleu-{n}": 100.0 * corpus_bleu(list_of_references, hypotheses, weights=w, smoothing_function=smoothing)
        for n, w in BLEU_WEIGHTS.items()
    }
    scores["bleu"] = sum(scores.values()) / len(BLEU_WEIGHTS)
    return scores


def rouge(
    predictions: Sequence[str], references: Sequence[str | Sequence[str]], use_stemmer: bool = False
) -> dict[str, float]:
    """Mean over pairs of the ROUGE-1/2/L F1 (`rouge_score.rouge_scorer.RougeScorer`) and their mean, in percent.

    With several references for one prediction, the best F1 per ROUGE type is taken (`RougeScorer.score_multi`).
    Returns `{"rouge-1", "rouge-2", "rouge-l", "rouge"}` where "rouge" is the mean of the three.
    """
    from rouge_score import rouge_scorer

    _check_pair(predictions, references, "predictions", "references")
    _check_texts(predictions, "predictions")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for prediction, refs in zip(predictions, _reference_lists(references)):
        # score(target, prediction): the reference comes first.
        result = scorer.score(refs[0], prediction) if len(refs) == 1 else scorer.score_multi(refs, prediction)
        for rouge_type in ROUGE_TYPES:
            totals[rouge_type] += result[rouge_type].fmeasure
    scores = {
        "rouge-1": 100.0 * totals["rouge1"] / len(predictions),
        "rouge-2": 100.0 * totals["rouge2"] / len(predictions),
        "rouge-l": 100.0 * totals["rougeL"] / len(predictions),
    }
    scores["rouge"] = sum(scores.values()) / len(ROUGE_TYPES)
    return scores


def nli_coherence(consistent_flags: Sequence[bool | int]) -> float:
    """Share (percent) of responses an NLI classifier judged consistent with their context (1/True = consistent)."""
    _check_non_empty(consistent_flags, "consistent_flags")
    for i, flag in enumerate(consistent_flags):
        if flag not in (0, 1):  # also accepts True/False
            raise ValueError(f"consistent_flags[{i}] must be 0/1 or a bool, got {flag!r}.")
    return 100.0 * sum(int(flag) for flag in consistent_flags) / len(consistent_flags)


# ----------------------------------------------------------------------------------------------------------------
# Personalization
# ----------------------------------------------------------------------------------------------------------------


def accuracy(predictions: Sequence[Any], labels: Sequence[Any]) -> float:
    """Percent of positions where the prediction equals the label."""
    _check_pair(predictions, labels, "predictions", "labels")
    return 100.0 * sum(p == t for p, t in zip(predictions, labels)) / len(labels)


def personalization_scores(
    per_attribute_predictions: Mapping[str, Sequence[int]], per_attribute_targets: Mapping[str, Sequence[int]]
) -> dict[str, float]:
    """Accuracy (percent) of the attribute classifier on the responses, per attribute, and their average "avg".

    Both mappings go from an attribute name (e.g. "language_style") to the per-response classifier predictions and
    the target attribute labels the responses were generated for; they must name the same attributes.
    """
    if not per_attribute_predictions:
        raise ValueError("per_attribute_predictions must name at least one attribute.")
    if set(per_attribute_predictions) != set(per_attribute_targets):
        raise ValueError(
            "per_attribute_predictions and per_attribute_targets must name the same attributes, "
            f"got {sorted(per_attribute_predictions)} and {sorted(per_attribute_targets)}."
        )
    if "avg" in per_attribute_predictions:
        raise ValueError('"avg" is reserved for the average and cannot be an attribute name.')
    scores = {}
    for attribute, predictions in per_attribute_predictions.items():
        targets = per_attribute_targets[attribute]
        _check_pair(predictions, targets, f"{attribute} predictions", f"{attribute} targets")
        scores[attribute] = accuracy(predictions, targets)
    scores["avg"] = sum(scores.values()) / len(scores)
    return scores


# ----------------------------------------------------------------------------------------------------------------
# Diversity
# ----------------------------------------------------------------------------------------------------------------


def distinct(texts: Sequence[str], n_values: Sequence[int] = (1, 2, 3)) -> dict[str, float]:
    """Distinct-n (Li et al., 2016) at sentence and corpus level, in percent.

    - `sentence-distinct-n`: mean over responses of (unique n-grams / n-grams) within the response; responses with
      no n-gram (fewer than n tokens) are left out of the mean (0 if no response has one);
    - `corpus-distinct-n`: unique n-grams over the whole set / total n-grams over the whole set;
    - `distinct`: the mean of all these values (six with the default n = 1, 2, 3), as the paper reports.
    """
    _check_non_empty(texts, "texts")
    _check_texts(texts, "texts")
    if len(n_values) == 0:
        raise ValueError("n_values must not be empty.")
    tokenized = [tokenize(t) for t in texts]
    scores: dict[str, float] = {}
    for n in n_values:
        ratios = []
        corpus_total = 0
        corpus_unique: set[tuple[str, ...]] = set()
        for tokens in tokenized:
            grams = ngrams(tokens, n)
            if grams:
                ratios.append(len(set(grams)) / len(grams))
            corpus_total += len(grams)
            corpus_unique.update(grams)
        scores[f"sentence-distinct-{n}"] = 100.0 * sum(ratios) / len(ratios) if ratios else 0.0
        scores[f"corpus-distinct-{n}"] = 100.0 * len(corpus_unique) / corpus_total if corpus_total else 0.0
    scores["distinct"] = sum(scores.values()) / len(scores)
    return scores


def self_bleu(texts: Sequence[str], sample_size: int = 150, seed: int = 0) -> float:
    """Self-BLEU (Zhu et al., 2018; lower = more diverse), in percent.

    `sample_size` responses (150 in the paper; all of them if fewer) are drawn with `random.Random(seed)`. Each
    sampled response is scored with sentence BLEU-4 (NLTK `sentence_bleu`, uniform weights, smoothing `method1`)
    against all the *other* sampled responses as references, and the scores are averaged.
    """
    from nltk.translate.bleu_score import sentence_bleu

    _check_non_empty(texts, "texts")
    _check_texts(texts, "texts")
    if sample_size < 2:
        raise ValueError(f"sample_size must be at least 2, got {sample_size}.")
    if len(texts) < 2:
        raise ValueError(f"self_bleu needs at least 2 texts, got {len(texts)}.")
    indices = random.Random(seed).sample(range(len(texts)), min(sample_size, len(texts)))
    sample = [tokenize(texts[i]) for i in indices]
    smoothing = _smoothing()
    total = 0.0
    for i, hypothesis in enumerate(sample):
        refs = sample[:i] + sample[i + 1 :]
        total += sentence_bleu(refs, hypothesis, weights=BLEU_WEIGHTS[4], smoothing_function=smoothing)
    return 100.0 * total / len(sample)


# ----------------------------------------------------------------------------------------------------------------
# Fluency
# ----------------------------------------------------------------------------------------------------------------


def _max_positions(config) -> int | None:
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def perplexity(
    texts: Sequence[str],
    model,
    tokenizer,
    contexts: Sequence[str] | None = None,
    batch_size: int = 8,
    add_bos: bool = True,
) -> dict[str, Any]:
    """Perplexity of the responses under a causal LM: exp(mean NLL over all response tokens of all texts).

    Each sequence is `[bos] + context tokens + response tokens` (context and response are tokenized separately,
    without special tokens, so the boundary is exact; the context string should hold any separator it needs).
    Only response tokens are scored; the BOS token (`tokenizer.bos_token_id`, else `eos_token_id`; GPT-2's
    `<|endoftext|>`) lets the first response token be scored too. With `add_bos=False` or a tokenizer with neither
    token and no context, the first token of each response is not scored. When a sequence exceeds the model's
    maximum length, the prefix is cut from the left; a response alone too long is an error.

    Sequences are right-padded into batches of `batch_size` (padding is masked out of attention and scores), run
    under `torch.no_grad()` with the model in eval mode (its mode is restored afterwards).
    Returns `{"perplexity": float, "nll": mean token NLL, "num_tokens": int, "lm": model name}`.
    """
    import torch
    import torch.nn.functional as F

    _check_non_empty(texts, "texts")
    _check_texts(texts, "texts")
    if contexts is not None:
        _check_pair(texts, contexts, "texts", "contexts")
        _check_texts(contexts, "contexts")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")

    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        bos = getattr(tokenizer, "eos_token_id", None)
    max_len = _max_positions(model.config)

    sequences: list[tuple[list[int], int]] = []  # (input ids, number of prefix tokens)
    for i, text in enumerate(texts):
        prefix = [bos] if add_bos and bos is not None else []
        if contexts is not None:
            prefix += tokenizer(contexts[i], add_special_tokens=False)["input_ids"]
        response = tokenizer(text, add_special_tokens=False)["input_ids"]
        if max_len is not None and len(prefix) + len(response) > max_len:
            if len(response) + (1 if prefix else 0) > max_len:
                raise ValueError(
                    f"texts[{i}] has {len(response)} tokens, more than the model's maximum length {max_len}."
                )
            prefix = prefix[len(prefix) + len(response) - max_len :]
        sequences.append((prefix + response, len(prefix)))

    pad_id = getattr(tokenizer, "pad_token_id", None)
    if pad_id is None:
        pad_id = bos if bos is not None else 0  # any id: padded positions are masked and never scored
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total_nll = 0.0
    total_tokens = 0
    try:
        with torch.no_grad():
            # Longest first, so that batches hold sequences of similar lengths (the pooled mean is order-free).
            order = sorted(range(len(sequences)), key=lambda k: -len(sequences[k][0]))
            for start in range(0, len(order), batch_size):
                batch = [sequences[k] for k in order[start : start + batch_size]]
                width = max(len(ids) for ids, _ in batch)
                if width < 2:
                    continue  # nothing can be predicted (at most one token in every sequence)
                input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
                attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
                labels = torch.full((len(batch), width), -100, dtype=torch.long)
                for row, (ids, n_prefix) in enumerate(batch):
                    input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
                    attention_mask[row, : len(ids)] = 1
                    # Tokens at position 0 have no left context and are never scored.
                    first = max(n_prefix, 1)
                    labels[row, first : len(ids)] = torch.tensor(ids[first:], dtype=torch.long)
                input_ids, attention_mask, labels = input_ids.to(device), attention_mask.to(device), labels.to(device)
                logits = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
                shift_logits = logits[:, :-1, :]
                shift_labels = labels[:, 1:]
                nll = F.cross_entropy(
                    shift_logits.reshape(-1, shift_logits.size(-1)),
                    shift_labels.reshape(-1),
                    ignore_index=-100,
                    reduction="sum",
                )
                total_nll += nll.item()
                total_tokens += int((shift_labels != -100).sum().item())
    finally:
        model.train(was_training)

    if total_tokens == 0:
        raise ValueError("No response token could be scored (are the texts empty?).")
    mean_nll = total_nll / total_tokens
    name = getattr(model.config, "_name_or_path", "") or type(model).__name__
    return {"perplexity": math.exp(mean_nll), "nll": mean_nll, "num_tokens": total_tokens, "lm": name}
