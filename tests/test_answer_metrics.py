"""Metric functions against values computed by hand (icu_tasks.harness.answer_metrics)."""

from __future__ import annotations

import math

import pytest

from icu_tasks.harness import answer_metrics as metrics
from icu_tasks.harness.hooks import aggregate_contains, aggregate_exact_match, aggregate_mc_accuracy


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Hello,   World! ", "hello world"),
        ("Straße", "strasse"),  # casefold, not lower()
        ("ＡＢＣ１２３", "abc123"),  # NFKC: full-width letters and digits
        ("ﬁle", "file"),  # NFKC: ligature
        ("$52,000.00", "5200000"),  # symbols and punctuation deleted, not spaced
        ("MED-0042/7", "med00427"),
        ("José  Müller\t\n", "josé müller"),  # non-ASCII letters are kept
        ("«Dr. O’Neil»", "dr oneil"),  # unicode quotes and guillemets are punctuation
        ("", ""),
        (None, ""),
        ("?!.,", ""),
    ],
)
def test_normalize_answer(raw, expected):
    assert metrics.normalize_answer(raw) == expected


@pytest.mark.parametrize(
    ("prediction", "target", "expected"),
    [
        ("John Smith", "john smith", 1.0),
        ("John Smith.", "John Smith", 1.0),
        ("JOSÉ MÜLLER", "José Müller", 1.0),
        ("Jose Muller", "José Müller", 0.0),  # accents are part of the answer
        ("John Smith Jr", "John Smith", 0.0),
        ("", "John Smith", 0.0),
        (None, "John Smith", 0.0),
        ("", "", 1.0),
        ("anything", "--", 0.0),  # target normalises to "": only an empty prediction matches it
        ("...", "--", 1.0),
    ],
)
def test_exact_match(prediction, target, expected):
    assert metrics.exact_match(prediction, target) == expected


@pytest.mark.parametrize(
    ("prediction", "target", "expected"),
    [
        ("The patient is John Smith.", "John Smith", 1.0),
        ("john smith", "John Smith", 1.0),
        ("Smith John", "John Smith", 0.0),  # order matters
        ("Room 312", "12", 0.0),  # whole tokens only
        ("Room 12, left", "12", 1.0),
        ("Johnny Smithers", "John Smith", 0.0),
        ("salary: $52,000 per year", "52000", 1.0),
        ("", "John", 0.0),
        ("", "", 1.0),
        ("something", "", 0.0),  # empty target falls back to exact match
    ],
)
def test_contains_match(prediction, target, expected):
    assert metrics.contains_match(prediction, target) == expected


@pytest.mark.parametrize(
    ("prediction", "target", "expected"),
    [
        # LCS / number of target tokens, computed by hand:
        ("John Smith", "John Smith", 1.0),
        ("the answer is John Smith indeed", "John Smith", 1.0),  # recall ignores extra words
        ("Smith John", "John Smith", 0.5),  # LCS = 1 of 2
        ("12 Oak Street Springfield", "12 Oak Street, Springfield, IL", 4 / 5),
        ("Springfield Oak", "12 Oak Street Springfield", 1 / 4),  # LCS of out-of-order tokens = 1
        ("running dogs", "run dog", 1.0),  # Porter stemmer: running→run, dogs→dog
        ("Müller Klinik", "Klinik Müller", 0.5),  # non-ASCII tokens kept (rouge_score's default drops them)
        ("", "John Smith", 0.0),
        (None, "John Smith", 0.0),
        ("", "", 1.0),
        ("x", "!!", 0.0),
    ],
)
def test_rouge_l_recall(prediction, target, expected):
    assert metrics.rouge_l_recall(prediction, target) == pytest.approx(expected)


def test_rouge_l_recall_matches_rouge_score_on_ascii():
    """On plain ASCII text our tokenizer gives what rouge_score's own (use_stemmer=True) gives."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    pairs = [
        ("the quick brown foxes jumped", "quick foxes were jumping over"),
        ("Acute bronchitis treated", "acute bronchitis"),
        ("Senior Software Engineer at Acme", "software engineer"),
    ]
    for prediction, target in pairs:
        expected = scorer.score(target, prediction)["rougeL"].recall
        assert metrics.rouge_l_recall(prediction, target) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("lls", "gold", "expected"),
    [
        ([-1.0, -2.0, -3.0, -4.0], 0, 1.0),
        ([-4.0, -3.0, -0.5, -9.0], 2, 1.0),
        ([-4.0, -3.0, -0.5, -9.0], 1, 0.0),
        ([-2.0, -2.0, -2.0, -2.0], 0, 1.0),  # ties go to the first choice
        ([-2.0, -2.0, -2.0, -2.0], 3, 0.0),
    ],
)
def test_mc_accuracy(lls, gold, expected):
    assert metrics.mc_accuracy(lls, gold) == expected


def test_mc_accuracy_rejects_bad_input():
    with pytest.raises(ValueError, match="outside"):
        metrics.mc_accuracy([-1.0, -2.0], 2)
    with pytest.raises(ValueError):
        metrics.mc_prediction([])


def test_aggregations_take_the_mean_of_their_key():
    items = [
        {"exact_match": 1.0, "contains": 1.0, "mc_accuracy": 0.0},
        {"exact_match": 0.0, "contains": 1.0, "mc_accuracy": 0.0},
        {"exact_match": 0.0, "contains": 0.0, "mc_accuracy": 1.0},
        {"exact_match": 1.0, "contains": 1.0, "mc_accuracy": 0.0},
    ]
    assert aggregate_exact_match(items) == 0.5
    assert aggregate_contains(items) == 0.75
    assert aggregate_mc_accuracy(items) == 0.25
    assert math.isnan(aggregate_exact_match([]))


def _row(**overrides):
    """A QA row as lmms-eval hands it to the hooks (columns of icu_tasks.data.schema.QA_SCHEMA)."""
    row = {
        "id": "p0007-diagnosis-vqa",
        "profile_id": "p0007",
        "domain": "medical",
        "field": "diagnosis",
        "view": "vqa",
        "question": "What is the diagnosis of the person in this document?",
        "answer": "Acute bronchitis",
        "choices": ["Migraine", "Acute bronchitis", "Type 2 diabetes", "Asthma"],
        "image": "images/p0007_mask_diagnosis.png",
        "forget_task": 3,
        "split": "forget",
    }
    row.update(overrides)
    return row


def test_process_results_returns_one_payload_under_every_metric():
    from icu_tasks.harness.hooks import GENERATE_METRICS, process_results

    out = process_results(_row(), ["acute bronchitis."])
    assert set(out) == set(GENERATE_METRICS)
    for key in GENERATE_METRICS:  # the same payload, plus that metric's per-doc value for lmms-eval's stderr
        assert out[key] == {
            "id": "p0007-diagnosis-vqa",
            "profile_id": "p0007",
            "forget_task": 3,
            "split": "forget",
            "view": "vqa",
            "field": "diagnosis",
            "prediction": "acute bronchitis.",
            "exact_match": 1.0,
            "contains": 1.0,
            "rougeL_recall": 1.0,
            "score": 1.0,
        }

    wrong = process_results(_row(forget_task=0, split="retain_eval"), ["I think it is bronchitis"])
    assert (wrong["contains"]["forget_task"], wrong["contains"]["split"]) == (0, "retain_eval")
    scores = (wrong["exact_match"]["score"], wrong["contains"]["score"], wrong["rougeL_recall"]["score"])
    assert scores == (0.0, 0.0, 0.5)  # "bronchitis": 1 of the answer's 2 tokens
    assert all(wrong[key]["rougeL_recall"] == 0.5 for key in GENERATE_METRICS)


def test_mc_process_results_picks_the_most_likely_choice():
    from icu_tasks.harness.hooks import mc_doc_to_target, mc_process_results

    row = _row()
    assert mc_doc_to_target(row) == 1
    right = mc_process_results(row, [(-9.0, False), (-1.5, True), (-3.0, False), (-7.0, False)])
    assert set(right) == {"mc_accuracy"}
    assert right["mc_accuracy"]["mc_accuracy"] == 1.0
    assert right["mc_accuracy"]["prediction"] == "Acute bronchitis"
    assert right["mc_accuracy"]["forget_task"] == 3 and right["mc_accuracy"]["score"] == 1.0
    wrong = mc_process_results(row, [(-0.1, True), (-1.5, False), (-3.0, False), (-7.0, False)])
    assert (wrong["mc_accuracy"]["mc_accuracy"], wrong["mc_accuracy"]["prediction"]) == (0.0, "Migraine")


def test_mc_target_not_among_choices_is_a_data_error():
    from icu_tasks.errors import DataError
    from icu_tasks.harness.hooks import mc_doc_to_target

    with pytest.raises(DataError, match="not among its choices"):
        mc_doc_to_target(_row(answer="Gout"))


def test_mc_process_results_reads_lmms_eval_stringified_responses():
    """lmms-eval 0.7.3 hands loglikelihood responses to process_results as str((ll, is_greedy))."""
    from icu_tasks.harness.hooks import loglikelihood_of, mc_process_results

    responses = ["(-9.0, False)", "(-1.5, True)", "(np.float64(-3.0), False)", "(-inf, False)"]
    assert [loglikelihood_of(r) for r in responses] == [-9.0, -1.5, -3.0, float("-inf")]
    assert mc_process_results(_row(), responses)["mc_accuracy"]["mc_accuracy"] == 1.0
    with pytest.raises(ValueError, match="cannot read a loglikelihood"):
        loglikelihood_of("no number here")
