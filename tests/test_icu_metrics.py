"""ICU metrics against matrices computed by hand (the expected numbers are worked out in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from icu_tasks.continual import fluency as fl
from icu_tasks.continual import metrics as im
from icu_tasks.continual import retention

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


def test_historical_forgetting_preservation_is_clipped():
    # task 1 comes back above its vanilla accuracy: (2,1): 1 - 0.9/0.6 = -0.5 -> clipped to 0 (normalised f)
    a = np.array([[0.6, 0.4], [0.0, 0.4], [0.9, 0.0]])
    assert im.historical_forgetting_preservation(a).value == pytest.approx(0.0)


def test_rebound_hand_computed():
    # (2,1): max(0, 0.4 - A[1][1]=0.2) = 0.2; (3,1): max(0, 0.2 - 0.2) = 0; (3,2): max(0, 0.25 - A[2][2]=0.1) = 0.15
    # mean = 0.35/3 = 0.11666...
    assert im.rebound(A).value == pytest.approx(0.35 / 3)


def test_retained_utility_hand_computed():
    # RU_1 = (0.6/0.8 + 0.5/0.5)/2 = 0.875; RU_2 = (0.7/0.8 + 0.4/0.5)/2 = 0.8375; RU_3 = (0.4/0.8 + 0.45/0.5)/2 = 0.7
    np.testing.assert_allclose(retention.retained_utility_per_stage(R, U), [1.0, 0.875, 0.8375, 0.7])
    assert retention.retained_utility(R, U).value == pytest.approx((0.875 + 0.8375 + 0.7) / 3)  # 0.804166...


def test_largest_ru_drop_hand_computed():
    # RU = 1, 0.875, 0.8375, 0.7: falls 0.125 (into 1), 0.0375 (into 2), 0.1375 (into 3) -> 0.1375 at stage 3
    drop = retention.largest_drop(R, U)
    assert (drop.value, drop.stage) == (pytest.approx(0.1375), 3)
    # a rise is no fall: RU 1 -> 1.25 -> 1.0 has one fall of 0.25, into stage 2
    assert retention.largest_drop([0.8, 1.0, 0.8], [0.5, 0.5, 0.5]).value == pytest.approx(0.125)
    # RU that never falls: 0, no stage
    flat = retention.largest_drop([0.8] * 3, [0.5] * 3)
    assert (flat.value, flat.stage) == (0.0, None)


def test_largest_ru_drop_does_not_shrink_with_more_stages():
    # one collapse of RU by 0.5 at stage 2, then T - 2 quiet stages: the largest drop stays 0.5 for any T
    # (1 - mean |dRU| would tend to 1: 1 - 0.5 / T)
    for T in (2, 10, 100):
        r = np.array([0.8, 0.8] + [0.4] * (T - 1))
        u = np.array([0.5, 0.5] + [0.25] * (T - 1))
        drop = retention.largest_drop(r, u)
        assert (drop.value, drop.stage) == (pytest.approx(0.5), 2), T


def test_task_unknown_to_vanilla_is_excluded_and_named():
    a = A.copy()
    a[0, 1] = 0.0  # the vanilla model never knew task 2
    fe = im.forgetting_effectiveness(a)
    assert fe.value == pytest.approx((0.75 + 1.0) / 2)  # k=2 left out
    assert any("task(s) 2" in n and "did not know" in n for n in fe.notes)
    a[0, 1] = 0.05  # known, but below the margin A[0][j] - B[0] >= 0.1: excluded as well
    assert im.forgetting_effectiveness(a).value == pytest.approx((0.75 + 1.0) / 2)
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
    # a single stage: RU = RU_1 = (0.6/0.8 + 0.5/0.5)/2 = 0.875; largest drop = RU_0 - RU_1 = 0.125
    r, u = np.array([0.8, 0.6]), np.array([0.5, 0.5])
    assert retention.retained_utility(r, u).value == pytest.approx(0.875)
    assert retention.largest_drop(r, u).value == pytest.approx(0.125)


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
    # RU over stages 1 and 3: (0.875 + 0.7)/2; falls between consecutive scored stages 0 -> 1 (0.125) and
    # 1 -> 3 (0.175, spanning the unscored stage 2)
    assert retention.retained_utility(r, u).value == pytest.approx(0.7875)
    drop = retention.largest_drop(r, u)
    assert (drop.value, drop.stage) == (pytest.approx(0.175), 3)
    assert any("from stage 1 to stage 3" in n for n in drop.notes)


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
    assert math.isnan(retention.retained_utility(r, u).value)
    assert math.isnan(retention.largest_drop(r, u).value)


def test_small_retain_baseline_uses_utility_alone():
    # R[0] = 0.02 would give R[k]/R[0] up to 5 (R[3] = 0.1); below the 0.1 floor it is left out:
    # RU_k = U[k]/U[0]: 1.0, 0.8, 0.9 -> 0.9
    for r0 in (0.0, 0.02, 0.099):
        r = np.array([r0, 0.1, 0.05, 0.1])
        ru = retention.retained_utility(r, U)
        assert ru.value == pytest.approx(0.9), r0
        assert any("R[0]" in n and "left out of RU" in n for n in ru.notes)
    # at the floor it counts: RU_1 = (0.1/0.1 + 1)/2 = 1
    assert retention.retained_utility_per_stage([0.1, 0.1], [0.5, 0.5])[1] == pytest.approx(1.0)
    both = retention.retained_utility([0.05, 0.05], [0.01, 0.01])
    assert math.isnan(both.value) and "neither R[0] nor U[0]" in both.notes[0]


def test_only_vanilla_row_is_undefined():
    a = np.array([[0.8, 0.5]])
    assert math.isnan(im.forgetting_effectiveness(a).value)
    assert math.isnan(retention.retained_utility([0.8], [0.5]).value)


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        im.forgetting_effectiveness([0.1, 0.2])
    with pytest.raises(ValueError):
        im.forgetting_effectiveness(np.zeros((4, 2)))  # 3 stages but only 2 task columns
    with pytest.raises(ValueError):
        retention.retained_utility([1.0, 0.5], [1.0])


def test_ngram_entropy_hand_computed():
    # "a b c d": 3 distinct bigrams -> H2 = log2 3; 2 distinct trigrams -> H3 = 1
    # (2/3 * log2 3 + 4/3 * 1) / 2 = 1.194987...
    assert fl.ngram_entropy("a b c d") == pytest.approx((2 / 3 * math.log2(3) + 4 / 3) / 2)
    # "a b a b": bigrams ab, ba, ab -> p = (2/3, 1/3), H2 = 0.918296; trigrams aba, bab -> H3 = 1
    h2 = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    assert fl.ngram_entropy("A b a B") == pytest.approx((2 / 3 * h2 + 4 / 3) / 2)  # lower-cased: 0.972765...
    # "The cat." -> tokens the, cat, . : 2 bigrams (H2 = 1), 1 trigram (H3 = 0) -> 1/3
    assert fl.ngram_entropy("The cat.") == pytest.approx(1 / 3)
    assert fl.ngram_entropy("a a a a") == 0.0  # a degenerate repetition has no entropy
    assert fl.ngram_entropy("x") == 0.0
    assert fl.ngram_entropy("") == 0.0


def test_fluency_is_mean_entropy_of_answers():
    expected = ((2 / 3 * math.log2(3) + 4 / 3) / 2 + 0.0) / 2  # 0.597493...
    assert fl.fluency(["a b c d", "a a a a"]) == pytest.approx(expected)
    assert math.isnan(fl.fluency([]))


def test_base_rate_normalises_and_over_forgetting_is_reported_apart():
    a = np.array([[0.8, 0.5], [0.35, 0.5], [0.1, 0.2]])
    # B[0] = 0.2: denominators A[0][j] - B[0] = 0.6 (task 1), 0.3 (task 2)
    # FE: k=1: (0.8 - 0.35)/0.6 = 0.75; k=2: (0.5 - 0.2)/0.3 = 1.0 -> 0.875
    assert im.forgetting_effectiveness(a, 0.2).value == pytest.approx(0.875)
    # HFP: (2,1): (0.8 - 0.1)/0.6 = 1.1667 -> clipped to 1 (going below the base rate is not rewarded)
    assert im.historical_forgetting_preservation(a, 0.2).value == pytest.approx(1.0)
    # over-forgetting: (1,1): max(0, 0.2 - 0.35) = 0; (2,1): 0.2 - 0.1 = 0.1; (2,2): 0.2 - 0.2 = 0 -> 0.1/3
    assert im.over_forgetting(a, 0.2).value == pytest.approx(0.1 / 3)
    assert im.over_forgetting(a).value == 0.0  # B[0] = 0 (no holdout): nothing is below it
    # collateral: only (1,2): (0.5 - 0.5)/0.3 = 0
    assert im.collateral(a, 0.2).value == pytest.approx(0.0)
    # f matrix: row 0 all 0; row 1: 0.75, 0; row 2: clip(0.7/0.6) = 1, 1.0
    np.testing.assert_allclose(im.normalised_forgetting(a, 0.2), [[0, 0], [0.75, 0], [1, 1]])
    # B[0] = 0.45: task 2's margin 0.5 - 0.45 = 0.05 < 0.1 -> excluded; FE k=1: (0.8 - 0.35)/0.35 > 1 -> 1
    fe = im.forgetting_effectiveness(a, 0.45)
    assert fe.value == pytest.approx(1.0)
    assert any("task(s) 2" in n and "base rate" in n for n in fe.notes)


def test_collateral_hand_computed():
    # cells k >= 1, j > k of f = 1 - A[k][j]/A[0][j] (B[0] = 0), task 4 (never requested) included:
    # (1,2): 1 - 0.5/0.5 = 0; (1,3): 1 - 0.9/1.0 = 0.1; (1,4): 1 - 0.6/0.6 = 0; (2,3): 1 - 1.0/1.0 = 0;
    # (2,4): 1 - 0.5/0.6 = 1/6; (3,4): 0 -> (0.1 + 1/6)/6 = 2/45
    assert im.collateral(A).value == pytest.approx(2 / 45)


def test_retained_utility_final():
    # RU_3 = (0.4/0.8 + 0.45/0.5)/2 = 0.7
    ru = retention.retained_utility_final(R, U)
    assert (ru.value, ru.stage) == (pytest.approx(0.7), 3)
    r, u = R.copy(), U.copy()
    r[3] = u[3] = NAN  # partial run: the last scored stage stands in, RU_2 = (0.7/0.8 + 0.4/0.5)/2 = 0.8375
    ru = retention.retained_utility_final(r, u)
    assert (ru.value, ru.stage) == (pytest.approx(0.8375), 2)
    assert any("RU_final is RU_2" in n for n in ru.notes)


def test_icu_score_is_a_harmonic_mean():
    # FE 0.85, HFP 1.75/3, RU_final 0.7 (the tests above): 3 / (1/0.85 + 3/1.75 + 1/0.7) = 0.69455...
    assert im.icu_score(0.85, 1.75 / 3, 0.7).value == pytest.approx(3 / (1 / 0.85 + 3 / 1.75 + 1 / 0.7))
    # with privacy 0.5: 4 / (1/0.85 + 3/1.75 + 1/0.7 + 2) = 0.60905...
    assert im.icu_score(0.85, 1.75 / 3, 0.7, 0.5).value == pytest.approx(
        4 / (1 / 0.85 + 3 / 1.75 + 1 / 0.7 + 2)
    )
    assert im.icu_formula(1.75 / 3, 0.5) == "H(FE, HFP, RU_final, privacy)"
    # no HFP (one stage): FE stands in for it, 3 / (2/0.75 + 1/0.875) = 0.78750
    single = im.icu_score(0.75, NAN, 0.875)
    assert single.value == pytest.approx(3 / (2 / 0.75 + 1 / 0.875))
    assert "FE stands in" in single.notes[0]
    assert im.icu_formula(NAN, NAN) == "H(FE, FE (for HFP), RU_final)"
    assert im.icu_score(1.0, 1.0, 0.0).value == 0.0
    assert im.icu_score(1.0, 1.0, 1.0, 0.0).value == 0.0  # perfectly identifiable people: headline 0
    assert math.isnan(im.icu_score(NAN, 1.0, 1.0).value)


def _headline(a: np.ndarray, r: np.ndarray, u: np.ndarray) -> float:
    ru_final = retention.retained_utility_final(r, u).value
    return im.icu_score(
        im.forgetting_effectiveness(a).value, im.historical_forgetting_preservation(a).value, ru_final
    ).value


A0 = [0.9, 0.8, 0.9]
R0, U0 = 0.8, 0.6


def test_collapsed_run_scores_low():
    # after stage 1 the model answers nothing: A = 0, R = 0, U = 0 -> FE = HFP = 1 (the old definitions' win)
    # but RU_final = 0, so the harmonic mean is 0
    a = np.array([A0, [0, 0, 0], [0, 0, 0], [0, 0, 0]])
    r, u = np.array([R0, 0, 0, 0]), np.array([U0, 0, 0, 0])
    assert im.forgetting_effectiveness(a).value == 1.0
    assert im.historical_forgetting_preservation(a).value == 1.0
    assert _headline(a, r, u) <= 0.1


def test_do_nothing_run_scores_low():
    # A[k] = A[0], R = R[0], U = U[0]: every f = 0 -> FE = HFP = 0, RU_final = 1 -> headline 0
    a = np.array([A0] * 4)
    r, u = np.full(4, R0), np.full(4, U0)
    assert retention.retained_utility_final(r, u).value == 1.0
    assert _headline(a, r, u) <= 0.1


def test_good_run_scores_high():
    # requested tasks (j <= k) go to 0, later tasks untouched; R = 0.75 after every stage, U unchanged
    # FE = HFP = 1, collateral 0, RU_final = (0.75/0.8 + 1)/2 = 0.96875 -> 3 / (1 + 1 + 1/0.96875) = 0.98936...
    a = np.array([A0, [0, 0.8, 0.9], [0, 0, 0.9], [0, 0, 0]])
    r, u = np.array([R0, 0.75, 0.75, 0.75]), np.full(4, U0)
    assert im.collateral(a).value == 0.0
    assert _headline(a, r, u) == pytest.approx(3 / (2 + 1 / 0.96875))
    assert _headline(a, r, u) >= 0.9
