"""Tests of evaluation/metrics.py on small hand-made inputs (checked by hand and against NLTK / rouge-score)."""

import math

import pytest
import torch
from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu, sentence_bleu
from rouge_score import rouge_scorer
from transformers import GPT2Config, GPT2LMHeadModel

from modeling_miracle.evaluation import metrics

PREDICTIONS = ["I usually go hiking with my brother.", "Join a club, it works well!", "Rain is nice."]
REFERENCES = ["I often go hiking with my sister.", "You could join a club or a class.", "Rain makes the garden happy."]


# ----------------------------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------------------------


def test_tokenize_lowercases_and_splits_punctuation():
    assert metrics.tokenize("Don't stop, OK?") == ["don't", "stop", ",", "ok", "?"]
    assert metrics.tokenize("  ") == []
    with pytest.raises(TypeError):
        metrics.tokenize(3)


# ----------------------------------------------------------------------------------------------------------------
# BLEU
# ----------------------------------------------------------------------------------------------------------------


def test_bleu_matches_nltk_called_directly():
    scores = metrics.bleu(PREDICTIONS, REFERENCES)
    hyps = [metrics.tokenize(p) for p in PREDICTIONS]
    refs = [[metrics.tokenize(r)] for r in REFERENCES]
    smoothing = SmoothingFunction().method1
    weights = [(1, 0, 0, 0), (0.5, 0.5, 0, 0), (1 / 3, 1 / 3, 1 / 3, 0), (0.25, 0.25, 0.25, 0.25)]
    expected = [100 * corpus_bleu(refs, hyps, weights=w, smoothing_function=smoothing) for w in weights]
    for n, value in enumerate(expected, start=1):
        assert scores[f"bleu-{n}"] == pytest.approx(value)
    assert scores["bleu"] == pytest.approx(sum(expected) / 4)
    # the four cumulative scores really differ (weights are not all the same)
    assert len({round(v, 6) for v in expected}) == 4


def test_bleu_by_hand():
    identical = metrics.bleu(["The cat sat on the mat."], ["the cat sat on the mat ."])
    assert all(identical[k] == pytest.approx(100.0) for k in ("bleu-1", "bleu-2", "bleu-3", "bleu-4", "bleu"))
    # clipped unigram precision: "the" counted once of twice, "cat" once -> 2/3; hypothesis longer -> BP = 1
    assert metrics.bleu(["the the cat"], ["the cat"])["bleu-1"] == pytest.approx(200 / 3)
    # all 3 unigrams match, but hypothesis (3) shorter than reference (6): BP = exp(1 - 6/3)
    assert metrics.bleu(["the cat sat"], ["the cat sat on the mat"])["bleu-1"] == pytest.approx(100 * math.exp(-1))


def test_bleu_accepts_several_references():
    single = metrics.bleu(["the cat sat on the mat"], ["a dog ran in the park"])
    multi = metrics.bleu(["the cat sat on the mat"], [["a dog ran in the park", "the cat sat on the mat"]])
    assert multi["bleu-4"] == pytest.approx(100.0)
    assert single["bleu-4"] < 20


# ----------------------------------------------------------------------------------------------------------------
# ROUGE
# ----------------------------------------------------------------------------------------------------------------


def test_rouge_matches_rouge_score_called_directly():
    scores = metrics.rouge(PREDICTIONS, REFERENCES)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    results = [scorer.score(r, p) for p, r in zip(PREDICTIONS, REFERENCES)]
    for key, rouge_type in (("rouge-1", "rouge1"), ("rouge-2", "rouge2"), ("rouge-l", "rougeL")):
        assert scores[key] == pytest.approx(100 * sum(r[rouge_type].fmeasure for r in results) / 3)
    assert scores["rouge"] == pytest.approx((scores["rouge-1"] + scores["rouge-2"] + scores["rouge-l"]) / 3)
    assert 0 < scores["rouge-2"] < scores["rouge-1"] < 100


def test_rouge_by_hand():
    # unigrams: 2 of 3 shared -> F1 2/3; bigrams: "the cat" 1 of 2 -> 1/2; LCS "the cat" = 2 -> 2/3
    scores = metrics.rouge(["the cat sat"], ["the cat ran"])
    assert scores["rouge-1"] == pytest.approx(200 / 3)
    assert scores["rouge-2"] == pytest.approx(50.0)
    assert scores["rouge-l"] == pytest.approx(200 / 3)
    assert scores["rouge"] == pytest.approx((200 / 3 + 50 + 200 / 3) / 3)
    # averaged over pairs: a perfect pair (100) and a disjoint pair (0)
    assert metrics.rouge(["a b", "c d"], ["a b", "e f"])["rouge-1"] == pytest.approx(50.0)


# ----------------------------------------------------------------------------------------------------------------
# Distinct
# ----------------------------------------------------------------------------------------------------------------


def test_distinct_by_hand():
    one = metrics.distinct(["a a b"])
    assert one["sentence-distinct-1"] == pytest.approx(200 / 3)  # {a, b} / 3 unigrams
    assert one["sentence-distinct-2"] == pytest.approx(100.0)  # (a a), (a b)
    assert one["sentence-distinct-3"] == pytest.approx(100.0)

    two = metrics.distinct(["a a b", "A b c"])
    assert two["sentence-distinct-1"] == pytest.approx((2 / 3 + 1) / 2 * 100)
    assert two["corpus-distinct-1"] == pytest.approx(50.0)  # {a, b, c} / 6
    assert two["corpus-distinct-2"] == pytest.approx(75.0)  # {(a a), (a b), (b c)} / 4
    assert two["corpus-distinct-3"] == pytest.approx(100.0)  # {(a a b), (a b c)} / 2
    six = [two[f"{level}-distinct-{n}"] for level in ("sentence", "corpus") for n in (1, 2, 3)]
    assert two["distinct"] == pytest.approx(sum(six) / 6)


def test_distinct_skips_responses_too_short_for_n():
    scores = metrics.distinct(["a a", "b"], n_values=(2,))
    assert scores["sentence-distinct-2"] == pytest.approx(100.0)  # only "a a" has a bigram
    assert scores["corpus-distinct-2"] == pytest.approx(100.0)
    assert metrics.distinct(["x"], n_values=(3,))["sentence-distinct-3"] == 0.0


# ----------------------------------------------------------------------------------------------------------------
# Self-BLEU
# ----------------------------------------------------------------------------------------------------------------


def test_self_bleu_identical_and_disjoint():
    assert metrics.self_bleu(["the cat sat on the mat ."] * 4) == pytest.approx(100.0)
    disjoint = ["alpha beta gamma delta epsilon", "one two three four five", "red green blue cyan pink"]
    assert metrics.self_bleu(disjoint) < 5.0


def test_self_bleu_matches_nltk_and_is_seeded():
    texts = ["the cat sat on the mat", "the dog sat on the rug", "a bird flew over the house"]
    toks = [metrics.tokenize(t) for t in texts]
    smoothing = SmoothingFunction().method1
    expected = sum(
        sentence_bleu(toks[:i] + toks[i + 1 :], toks[i], smoothing_function=smoothing) for i in range(3)
    ) / 3
    assert metrics.self_bleu(texts) == pytest.approx(100 * expected)

    many = [f"response {i} about topic {i % 3} and more words {i % 5}" for i in range(40)]
    assert metrics.self_bleu(many, sample_size=10, seed=1) == metrics.self_bleu(many, sample_size=10, seed=1)
    values = {metrics.self_bleu(many, sample_size=5, seed=s) for s in range(5)}
    assert len(values) > 1  # the sample depends on the seed


# ----------------------------------------------------------------------------------------------------------------
# Perplexity
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_lm(gpt2_tokenizer):
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(gpt2_tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=64,
                        bos_token_id=gpt2_tokenizer.bos_token_id, eos_token_id=gpt2_tokenizer.eos_token_id)
    return GPT2LMHeadModel(config).eval()


def manual_nll(model, ids, first_scored):
    """Sum of -log p(ids[t] | ids[:t]) for t >= first_scored, one forward pass per token; and the token count."""
    total = 0.0
    with torch.no_grad():
        for t in range(first_scored, len(ids)):
            logits = model(input_ids=torch.tensor([ids[:t]])).logits[0, -1]
            total -= torch.log_softmax(logits.double(), dim=-1)[ids[t]].item()
    return total, len(ids) - first_scored


def test_perplexity_matches_token_by_token_loop(tiny_lm, gpt2_tokenizer):
    text = "Join a club or a class, that works well."
    ids = [gpt2_tokenizer.bos_token_id] + gpt2_tokenizer(text, add_special_tokens=False)["input_ids"]
    nll, count = manual_nll(tiny_lm, ids, 1)
    result = metrics.perplexity([text], tiny_lm, gpt2_tokenizer)
    assert result["num_tokens"] == count == len(ids) - 1
    assert result["perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-4)
    assert result["lm"] == "GPT2LMHeadModel"
    # a random model over a 50k vocabulary is about uniform
    assert 10_000 < result["perplexity"] < 200_000


def test_perplexity_with_context_scores_only_response_tokens(tiny_lm, gpt2_tokenizer):
    context, text = "How should I meet people here?\n", "Join a club."
    ctx_ids = gpt2_tokenizer(context, add_special_tokens=False)["input_ids"]
    resp_ids = gpt2_tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = [gpt2_tokenizer.bos_token_id] + ctx_ids + resp_ids
    nll, count = manual_nll(tiny_lm, ids, 1 + len(ctx_ids))
    result = metrics.perplexity([text], tiny_lm, gpt2_tokenizer, contexts=[context])
    assert result["num_tokens"] == count == len(resp_ids)
    assert result["perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-4)
    unconditioned = metrics.perplexity([text], tiny_lm, gpt2_tokenizer)
    assert unconditioned["perplexity"] != pytest.approx(result["perplexity"], rel=1e-6)


def test_perplexity_batching_and_padding_match_one_by_one(tiny_lm, gpt2_tokenizer):
    texts = ["Hi.", "I usually go hiking with my brother on weekends.", "Rain makes the garden happy.", "Sure!"]
    contexts = ["Hello?", "What do you do?", "Do you like rain?", "Ok?"]
    for ctx in (None, contexts):
        batched = metrics.perplexity(texts, tiny_lm, gpt2_tokenizer, contexts=ctx, batch_size=3)
        total_nll = total_tokens = 0
        for i, text in enumerate(texts):
            one = metrics.perplexity([text], tiny_lm, gpt2_tokenizer, contexts=None if ctx is None else [ctx[i]],
                                     batch_size=1)
            total_nll += one["nll"] * one["num_tokens"]
            total_tokens += one["num_tokens"]
        assert batched["num_tokens"] == total_tokens
        assert batched["nll"] == pytest.approx(total_nll / total_tokens, rel=1e-5)
        assert batched["perplexity"] == pytest.approx(math.exp(total_nll / total_tokens), rel=1e-5)


def test_perplexity_uses_eval_mode_and_restores_it(tiny_lm, gpt2_tokenizer):
    texts = ["I usually go hiking with my brother.", "Rain makes the garden happy."]
    reference = metrics.perplexity(texts, tiny_lm, gpt2_tokenizer)["perplexity"]
    tiny_lm.train()
    try:
        again = metrics.perplexity(texts, tiny_lm, gpt2_tokenizer)["perplexity"]
        assert tiny_lm.training  # restored
    finally:
        tiny_lm.eval()
    assert again == pytest.approx(reference, rel=1e-6)  # dropout was off


def test_perplexity_errors(tiny_lm, gpt2_tokenizer):
    with pytest.raises(ValueError, match="must not be empty"):
        metrics.perplexity([], tiny_lm, gpt2_tokenizer)
    with pytest.raises(ValueError, match="2 texts and 1 contexts"):
        metrics.perplexity(["a", "b"], tiny_lm, gpt2_tokenizer, contexts=["c"])
    with pytest.raises(ValueError, match="No response token"):
        metrics.perplexity([""], tiny_lm, gpt2_tokenizer)
    with pytest.raises(ValueError, match="maximum length 64"):
        metrics.perplexity(["word " * 100], tiny_lm, gpt2_tokenizer)


# ----------------------------------------------------------------------------------------------------------------
# Personalization and NLI
# ----------------------------------------------------------------------------------------------------------------


def test_accuracy_and_personalization_by_hand():
    assert metrics.accuracy([1, 0, 2, 2], [1, 1, 2, 0]) == pytest.approx(50.0)
    scores = metrics.personalization_scores(
        {"language_style": [1, 1, 0, 0], "attitude": [0, 1, 1, 1], "mental_characteristics": [1, 0, 1, 0]},
        {"language_style": [1, 1, 0, 1], "attitude": [0, 1, 1, 1], "mental_characteristics": [0, 1, 0, 1]},
    )
    assert scores == pytest.approx({"language_style": 75.0, "attitude": 100.0, "mental_characteristics": 0.0,
                                    "avg": 175.0 / 3})


def test_nli_coherence_by_hand():
    assert metrics.nli_coherence([1, 0, 1, 1]) == pytest.approx(75.0)
    assert metrics.nli_coherence([True, False]) == pytest.approx(50.0)
    with pytest.raises(ValueError, match=r"consistent_flags\[1\]"):
        metrics.nli_coherence([1, 2])


# ----------------------------------------------------------------------------------------------------------------
# Input validation
# ----------------------------------------------------------------------------------------------------------------


def test_error_messages():
    with pytest.raises(ValueError, match="got 3 predictions and 2 references"):
        metrics.bleu(["a", "b", "c"], ["a", "b"])
    with pytest.raises(ValueError, match="got 1 predictions and 2 references"):
        metrics.rouge(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="predictions must not be empty"):
        metrics.bleu([], [])
    with pytest.raises(ValueError, match="texts must not be empty"):
        metrics.distinct([])
    with pytest.raises(ValueError, match="at least 2 texts"):
        metrics.self_bleu(["only one"])
    with pytest.raises(ValueError, match="got 2 predictions and 3 labels"):
        metrics.accuracy([1, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="same attributes"):
        metrics.personalization_scores({"attitude": [1]}, {"language_style": [1]})
    with pytest.raises(ValueError, match="got 1 attitude predictions and 2 attitude targets"):
        metrics.personalization_scores({"attitude": [1]}, {"attitude": [1, 0]})
    with pytest.raises(ValueError, match="must not be empty"):
        metrics.nli_coherence([])
    with pytest.raises(TypeError, match="single string"):
        metrics.distinct("a a b")
    with pytest.raises(TypeError, match=r"predictions\[1\] must be a string"):
        metrics.bleu(["a", None], ["a", "b"])
