"""ICU metrics against matrices computed by hand (the expected numbers are worked out in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from icu_tasks import icu_metrics as im

NAN = math.nan

# Rows: after stage k = 0..3 (0 = vanilla); columns: forget task j = 1..4 (task 4 is a future task).
A = np.array(
    [
        [0.8, 0.5, 1.0, 0.6],
        [0.2, 0.5, 0.9, 0.6],
        [0.4, 0.1, 1.0, 0.5],
        [0.2, 0.25, 0.0, 0.6],
    ]
)
R = np.array([0.8, 0.6, 0.7, 0.4])
U = np.array([0.5, 0.5, 0.4, 0.45])


def test_forgetting_effectiveness_hand_computed():
    # k=1: 1 - 0.2/0.8 = 0.75; k=2: 1 - 0.1/0.5 = 0.8; k=3: 1 - 0.0/1.0 = 1.0 -> mean 2.55/3 = 0.85
    fe = im.forgetting_effectiveness(A)
    assert fe.value == pytest.approx(0.85)
    assert fe.notes == ()


def test_forgetting_effectiveness_clips_each_term():
    # k=1: 1 - 0.9/0.6 = -0.5 -> clipped to 0; k=2: 1 - 0.0/0.4 = 1 -> mean 0.5 (unclipped mean would be 0.25)
    a = np.array([[0.6, 0.4], [0.9, 0.4], [0.6, 0.0]])
    assert im.forgetting_effectiveness(a).value == pytest.approx(0.5)


def test_historical_forgetting_preservation_hand_computed():
    # pairs (k, j): (2,1): 1 - 0.4/0.8 = 0.5; (3,1): 1 - 0.2/0.8 = 0.75; (3,2): 1 - 0.25/0.5 = 0.5
    # mean = 1.75/3 = 0.58333...
    hfp = im.historical_forgetting_preservation(A)
    assert hfp.value == pytest.approx(1.75 / 3)
    assert hfp.notes == ()


def test_historical_forgetting_preservation_is_not_clipped():
    # task 1 comes back above its vanilla accuracy: (2,1): 1 - 0.9/0.6 = -0.5
    a = np.array([[0.6, 0.4], [0.0, 0.4], [0.9, 0.0]])
    assert im.historical_forgetting_preservation(a).value == pytest.approx(-0.5)


def test_rebound_hand_computed():
    # (2,1): max(0, 0.4 - A[1][1]=0.2) = 0.2; (3,1): max(0, 0.2 - 0.2) = 0; (3,2): max(0, 0.25 - A[2][2]=0.1) = 0.15
    # mean = 0.35/3 = 0.11666...
    assert im.rebound(A).value == pytest.approx(0.35 / 3)


def test_retained_utility_hand_computed():
    # RU_1 = (0.6/0.8 + 0.5/0.5)/2 = 0.875; RU_2 = (0.7/0.8 + 0.4/0.5)/2 = 0.8375; RU_3 = (0.4/0.8 + 0.45/0.5)/2 = 0.7
    np.testing.assert_allclose(im.retained_utility_per_stage(R, U), [1.0, 0.875, 0.8375, 0.7])
    assert im.retained_utility(R, U).value == pytest.approx((0.875 + 0.8375 + 0.7) / 3)  # 0.804166...


def test_stability_and_worst_stage_hand_computed():
    # |RU_k - RU_{k-1}|: k=1: |0.875 - 1| = 0.125; k=2: 0.0375; k=3: |0.7 - 0.8375| = 0.1375 -> mean 0.1
    st = im.stability(R, U)
    assert st.value == pytest.approx(0.9)
    assert st.stage == 3
    worst = im.worst_stage(R, U)
    assert worst.stage == 3
    assert worst.value == pytest.approx(0.1375)


def test_task_unknown_to_vanilla_is_excluded_and_named():
    a = A.copy()
    a[0, 1] = 0.0  # the vanilla model never knew task 2
    fe = im.forgetting_effectiveness(a)
    assert fe.value == pytest.approx((0.75 + 1.0) / 2)  # k=2 left out
    assert any("task(s) 2" in n and "did not know" in n for n in fe.notes)
    # HFP pairs left: (2,1) = 0.5, (3,1) = 0.75 -> 0.625; rebound: (2,1) = 0.2, (3,1) = 0 -> 0.1
    assert im.historical_forgetting_preservation(a).value == pytest.approx(0.625)
    assert im.rebound(a).value == pytest.approx(0.1)


def test_single_stage_history_metrics_are_nan_with_reason():
    a = np.array([[0.8, 0.6], [0.2, 0.6]])
    assert im.forgetting_effectiveness(a).value == pytest.approx(0.75)
    for metric in (im.historical_forgetting_preservation, im.rebound):
        result = metric(a)
        assert math.isnan(result.value)
        assert "undefined with 1 stage" in result.notes[0]
    # a single stage: RU = RU_1 = (0.6/0.8 + 0.5/0.5)/2 = 0.875; stability = 1 - |RU_1 - RU_0| = 1 - 0.125
    r, u = np.array([0.8, 0.6]), np.array([0.5, 0.5])
    assert im.retained_utility(r, u).value == pytest.approx(0.875)
    assert im.stability(r, u).value == pytest.approx(0.875)


def test_missing_stage_is_skipped_and_named():
    a = A.copy()
    a[2, :] = NAN  # stage 2 was never scored
    fe = im.forgetting_effectiveness(a)
    assert fe.value == pytest.approx((0.75 + 1.0) / 2)
    assert any("stage(s) 2" in n for n in fe.notes)
    # HFP: (3,1) = 0.75, (3,2) = 0.5 -> 0.625; rebound: (3,1) = 0; (3,2) needs A[2][2] -> skipped -> 0.0
    assert im.historical_forgetting_preservation(a).value == pytest.approx(0.625)
    assert im.rebound(a).value == pytest.approx(0.0)
    r, u = R.copy(), U.copy()
    r[2] = u[2] = NAN
    # RU over stages 1 and 3: (0.875 + 0.7)/2; stability only from the change 0 -> 1 (0.125): 0.875
    assert im.retained_utility(r, u).value == pytest.approx(0.7875)
    st = im.stability(r, u)
    assert st.value == pytest.approx(0.875)
    assert st.stage == 1
    assert any("stage(s) 2, 3" in n for n in st.notes)


def test_missing_vanilla_row_gives_nan_with_reason():
    a = A.copy()
    a[0, :] = NAN
    fe = im.forgetting_effectiveness(a)
    assert math.isnan(fe.value)
    assert fe.notes[0].startswith("undefined")
    r = R.copy()
    r[0] = NAN
    u = U.copy()
    u[0] = NAN
    assert math.isnan(im.retained_utility(r, u).value)
    assert math.isnan(im.stability(r, u).value)


def test_zero_retain_baseline_uses_utility_alone():
    r = np.array([0.0, 0.0, 0.0, 0.0])
    # RU_k = U[k]/U[0]: 1.0, 0.8, 0.9 -> 0.9
    ru = im.retained_utility(r, U)
    assert ru.value == pytest.approx(0.9)
    assert any("R[0] = 0" in n for n in ru.notes)


def test_only_vanilla_row_is_undefined():
    a = np.array([[0.8, 0.5]])
    assert math.isnan(im.forgetting_effectiveness(a).value)
    assert math.isnan(im.retained_utility([0.8], [0.5]).value)


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        im.forgetting_effectiveness([0.1, 0.2])
    with pytest.raises(ValueError):
        im.forgetting_effectiveness(np.zeros((4, 2)))  # 3 stages but only 2 task columns
    with pytest.raises(ValueError):
        im.retained_utility([1.0, 0.5], [1.0])


def test_ngram_entropy_hand_computed():
    # "a b c d": 3 distinct bigrams -> H2 = log2 3; 2 distinct trigrams -> H3 = 1
    # (2/3 * log2 3 + 4/3 * 1) / 2 = 1.194987...
    assert im.ngram_entropy("a b c d") == pytest.approx((2 / 3 * math.log2(3) + 4 / 3) / 2)
    # "a b a b": bigrams ab, ba, ab -> p = (2/3, 1/3), H2 = 0.918296; trigrams aba, bab -> H3 = 1
    h2 = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    assert im.ngram_entropy("A b a B") == pytest.approx((2 / 3 * h2 + 4 / 3) / 2)  # lower-cased: 0.972765...
    # "The cat." -> tokens the, cat, . : 2 bigrams (H2 = 1), 1 trigram (H3 = 0) -> 1/3
    assert im.ngram_entropy("The cat.") == pytest.approx(1 / 3)
    assert im.ngram_entropy("a a a a") == 0.0  # a degenerate repetition has no entropy
    assert im.ngram_entropy("x") == 0.0
    assert im.ngram_entropy("") == 0.0


def test_fluency_is_mean_entropy_of_answers():
    expected = ((2 / 3 * math.log2(3) + 4 / 3) / 2 + 0.0) / 2  # 0.597493...
    assert im.fluency(["a b c d", "a a a a"]) == pytest.approx(expected)
    assert math.isnan(im.fluency([]))
