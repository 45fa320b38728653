"""Paired, profile-level bootstrap; privacy; forget quality — against fixtures worked out by hand.

The runs here are built item by item (:class:`~icu_tasks.continual.items.RunItems`); the expected numbers are
computed in the comments or with plain numpy resampling written in the test, never with the function under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from icu_tasks.continual import bootstrap as bs
from icu_tasks.continual import registry as rg
from icu_tasks.continual.items import ItemTable, RunItems, UnitIndex, weighted_auc
from icu_tasks.continual.privacy import forget_quality, privacy_of_auc

COLUMNS = {
    "accuracy": ["score"],
    "likelihood": ["prob", "ratio"],
    "mia": ["loss", "zlib", "member"],
    "longform": ["entropy", "repetition", "leakage"],
}


def make_items(stages: int, **raw: list[tuple]) -> RunItems:
    """RunItems from rows ``(stage, split, view, task, profile, *values)`` per table (values in COLUMNS order)."""
    index, tables = UnitIndex(), {}
    for kind, cols in COLUMNS.items():
        rows = []
        for stage, split, view, task, profile, *values in raw.get(kind, []):
            unit = index.add(split, task, profile)
            rows.append({"stage": stage, "split": split, "view": view, "task": task, "unit": unit}
                        | dict(zip(cols, values, strict=True)))  # fmt: skip
        tables[kind] = ItemTable.from_rows(rows, cols)
    tasks = max([stages, *(r[3] for rows in raw.values() for r in rows if r[1] == "forget")])
    return RunItems(stages=stages, tasks=tasks, units=index.freeze(), **tables)


def _acc(
    stage: int, split: str, task: int, profile: str, scores: list[float], view: str = "qa"
) -> list[tuple]:
    return [(stage, split, view, task, profile, s) for s in scores]


def _constant_after_forgetting() -> RunItems:
    """Two stages, one forget task per stage with two profiles each (two items per profile), four retain and
    four utility units. Every profile's items are the same after stage 1 as after stage 2 (task 1 stays as
    forgotten as it was), retain and utility never change, but profiles differ from one another."""
    acc = []
    for k in range(3):
        for p, after in (("a", [0.0, 0.0]), ("b", [1.0, 0.0])):
            acc += _acc(k, "forget", 1, f"t1{p}", [1.0, 1.0] if k == 0 else after)
            acc += _acc(k, "forget", 2, f"t2{p}", [1.0, 1.0] if k < 2 else after)
        for i, scores in enumerate(([1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0])):
            acc += _acc(k, "retain_eval", 0, f"r{i}", scores)
            acc += _acc(k, "utility", 0, f"u{i}", scores[::-1])
    return make_items(2, accuracy=acc)


def test_paired_bootstrap_keeps_constant_rows_at_their_ideal():
    items = _constant_after_forgetting()
    point = bs.estimate(items)
    # A[1][1] = A[2][1] = (0 + 0 + 1 + 0)/4 = 0.25: rebound (2,1) = max(0, 0.25 - 0.25) = 0; RU_1 = RU_2 = 1
    assert point.forget["qa"][1, 0] == point.forget["qa"][2, 0] == pytest.approx(0.25)
    assert point.metrics["rebound_qa"].value == 0.0 and point.metrics["ru_max_drop"].value == 0.0
    ci = bs.bootstrap(items, point, n_boot=400, seed=3)
    # one draw of profiles for both stages: every resample has A[2][1] = A[1][1] and RU_k = 1
    assert ci.metrics["rebound_qa"] == (0.0, 0.0)
    assert ci.metrics["ru_max_drop"] == (0.0, 0.0)
    assert ci.metrics["ru_final"] == (1.0, 1.0)
    assert ci.extended == ()  # no interval had to be stretched to its point
    # the same data resampled independently per stage (the unpaired bootstrap) invents a rebound:
    rng = np.random.default_rng(3)
    profile_means = np.array([0.0, 0.5])  # task 1 profiles a, b after stages 1 and 2
    s1 = profile_means[rng.integers(0, 2, (400, 2))].mean(axis=1)
    s2 = profile_means[rng.integers(0, 2, (400, 2))].mean(axis=1)
    assert np.maximum(0.0, s2 - s1).mean() > 0.05


def _one_profile_drop() -> RunItems:
    """Four retain profiles with eight items each, all right at stage 0; at stage 1 profile r0 forgets all
    of its items (R[1] = 24/32 = 0.75). Utility and the forget task stay put."""
    acc = []
    for k in range(2):
        for i in range(4):
            acc += _acc(k, "retain_eval", 0, f"r{i}", [0.0 if (k == 1 and i == 0) else 1.0] * 8)
            acc += _acc(k, "utility", 0, f"u{i}", [1.0, 0.0])
            acc += _acc(k, "forget", 1, f"f{i}", [1.0, 1.0] if k == 0 else [0.0, 1.0])
    return make_items(1, accuracy=acc)


def test_one_profile_driving_a_drop_widens_the_interval_beyond_item_resampling():
    items = _one_profile_drop()
    point = bs.estimate(items)
    assert point.series["retain"][1] == pytest.approx(0.75)
    ci = bs.bootstrap(items, point, n_boot=2000, seed=0)
    # profiles: R[1]* = (number of r1..r3 among 4 draws)/4 ~ Binomial(4, 3/4)/4; P(R* <= 0.25) = 0.051, so the
    # 2.5th percentile is 0.25 and the 97.5th 1.0: a width of 0.75
    lo, hi = ci.series["retain"][1]
    assert (lo, hi) == (0.25, 1.0)
    # the items resampled one by one (what the old bootstrap did): 32 items, 24 right -> sd 0.077, width ~0.3
    stage1 = np.array([0.0] * 8 + [1.0] * 24)
    rng = np.random.default_rng(0)
    item_means = stage1[rng.integers(0, 32, (2000, 32))].mean(axis=1)
    item_lo, item_hi = np.percentile(item_means, [2.5, 97.5])
    assert hi - lo > 2 * (item_hi - item_lo)
    # RU_final = (0.75/1 + 1)/2 = 0.875; its interval is as wide as R[1]'s halved: (0.25 + 1)/2 .. 1
    assert point.metrics["ru_final"].value == pytest.approx(0.875)
    assert ci.metrics["ru_final"] == (pytest.approx(0.625), 1.0)


def test_resamples_keep_every_stratum_whole():
    items = _one_profile_drop()
    assert items.units.stratum_names == ("forget/1", "retain_eval", "utility")
    W = bs.draw_weights(items.units, 50, np.random.default_rng(1))
    for s in range(3):
        assert (W[:, items.units.strata == s].sum(axis=1) == 4).all()  # four units drawn in every stratum
    assert W.min() >= 0 and not (W == 1).all()


def test_privacy_is_two_sided():
    # 1 - 2|AUC - 0.5|: AUC 0.02 and 0.98 are both 0.48 away from 0.5 -> 1 - 0.96 = 0.04
    assert float(privacy_of_auc(0.02)) == pytest.approx(0.04)
    assert float(privacy_of_auc(0.98)) == pytest.approx(0.04)
    assert (
        float(privacy_of_auc(0.5)) == 1.0 and float(privacy_of_auc(0.0)) == float(privacy_of_auc(1.0)) == 0.0
    )
    assert math.isnan(float(privacy_of_auc(math.nan)))


def test_forget_quality_is_the_ks_p_value():
    # [1, 2, 3] vs [4, 5, 6]: D = 1; of the C(6, 3) = 20 equally likely splits only 2 (all below / all above)
    # reach D = 1, so the exact two-sided p-value is 2/20
    assert forget_quality([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(0.1)
    assert forget_quality([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == pytest.approx(1.0)
    assert math.isnan(forget_quality([], [1.0]))


def test_weighted_auc_counts_a_unit_as_often_as_it_was_drawn():
    # members 0.1 (unit 0, drawn twice) and 0.3 (unit 1, once) vs one non-member 0.2 (unit 2):
    # pairs (0.1, 0.2) count 1 each, twice; (0.3, 0.2) counts 0 -> 2/3. Unweighted: 1/2. A tie counts 1/2.
    W = np.array([[2.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    got = weighted_auc(np.array([0.1, 0.3]), np.array([0, 1]), np.array([0.2]), np.array([2]), W)
    np.testing.assert_allclose(got, [2 / 3, 1 / 2])
    tie = weighted_auc(np.array([0.2]), np.array([0]), np.array([0.2]), np.array([1]), np.ones((1, 2)))
    assert tie.tolist() == [0.5]


def _mia_run(member_loss: float) -> RunItems:
    """One stage; task 1 has two profiles, scored by accuracy, likelihood and membership inference."""
    acc, ll, mia = [], [], []
    for k in range(2):
        for i in range(2):
            acc += _acc(k, "forget", 1, f"f{i}", [1.0, 1.0] if k == 0 else [0.0, 0.0])
            acc += _acc(k, "retain_eval", 0, f"r{i}", [1.0, 1.0])
            acc += _acc(k, "utility", 0, f"u{i}", [1.0])
            mia.append((k, "forget", "qa", 1, f"f{i}", member_loss + i / 10, member_loss + i / 10, 1))
            mia.append((k, "holdout", "qa", 0, f"h{i}", 1.0 + i / 10, 1.0 + i / 10, 0))
            ll.append((k, "forget", "qa", 1, f"f{i}", 0.5, 1.0 + i if k == 0 else 4.0 + i))
            ll.append((k, "holdout", "qa", 0, f"h{i}", 0.1, 3.0 + i))
    return make_items(1, accuracy=acc, likelihood=ll, mia=mia)


@pytest.mark.parametrize("member_loss", [0.1, 5.0])
def test_identifiable_in_either_direction_scores_privacy_zero(member_loss):
    # members' losses 0.1, 0.2 (far more familiar than holdout 1.0, 1.1: AUC 1) or 5.0, 5.1 (far less: AUC 0)
    est = bs.estimate(_mia_run(member_loss))
    auc = 1.0 if member_loss < 1 else 0.0
    assert est.series["auc_loss_pooled"][1] == auc and est.series["privacy_loss_pooled"][1] == 0.0
    assert est.metrics["privacy_pooled"].value == 0.0 and est.metrics["privacy_pooled"].stage == 1
    # FE = 1, HFP undefined (T = 1: FE stands in), RU_final = 1, privacy 0 -> harmonic mean 0
    assert est.metrics["icu"].value == 0.0
    # forget quality at stage 1: truth ratios [4, 5] vs the vanilla's holdout [3, 4]: D = 1/2, exact p = 1
    # (KS on 2 + 2 values); at stage 0 the forget ratios [1, 2] vs [3, 4]: D = 1, p = 2/C(4, 2) = 1/3
    assert est.series["forget_quality_pooled"][0] == pytest.approx(1 / 3)
    assert est.series["forget_quality_pooled"][1] == pytest.approx(1.0)


def test_every_point_estimate_lies_inside_its_interval():
    rng = np.random.default_rng(5)
    acc, ll, mia, lf = [], [], [], []
    for k in range(4):
        for j in range(1, 4):
            for i in range(3):
                p = f"f{j}{i}"
                acc += _acc(
                    k, "forget", j, p, list(rng.integers(0, 2, 4).astype(float)), rng.choice(["qa", "vqa"])
                )
                ll.append((k, "forget", "vqa", j, p, rng.random(), rng.random() * 3))
                mia.append((k, "forget", "qa", j, p, rng.random(), rng.random(), 1))
                lf.append((k, "forget", "qa", j, p, rng.random() * 4, rng.random(), rng.random()))
        for i in range(4):
            acc += _acc(k, "retain_eval", 0, f"r{i}", list(rng.integers(0, 2, 3).astype(float)))
            acc += _acc(k, "utility", 0, f"u{i}", list(rng.integers(0, 2, 2).astype(float)))
            acc += _acc(k, "holdout", 0, f"h{i}", [float(rng.integers(0, 2))], "vqa")
            ll.append((k, "holdout", "vqa", 0, f"h{i}", rng.random(), rng.random() * 3))
            mia.append((k, "holdout", "qa", 0, f"h{i}", rng.random(), rng.random(), 0))
            lf.append((k, "retain_eval", "qa", 0, f"r{i}", rng.random() * 4, rng.random(), rng.random()))
    items = make_items(3, accuracy=acc, likelihood=ll, mia=mia, longform=lf)
    point = bs.estimate(items)
    ci = bs.bootstrap(items, point, n_boot=200, seed=2)
    for name, mv in point.metrics.items():
        lo, hi = ci.metrics[name]
        assert math.isnan(mv.value) and math.isnan(lo) or lo <= mv.value <= hi, name
    for name, values in point.series.items():
        for k, v in enumerate(values):
            lo, hi = ci.series[name][k]
            assert math.isnan(v) and math.isnan(lo) or lo <= v <= hi, (name, k)
    assert {s.name for s in rg.SERIES} == set(ci.series) and {m.name for m in rg.METRICS} == set(ci.metrics)
    for name in ci.extended:  # a stretched interval names a number that exists and ends at its point
        assert name.split("[")[0] in ci.series or name in ci.metrics or name.startswith("forget_")
    again = bs.bootstrap(items, point, n_boot=200, seed=2)
    np.testing.assert_array_equal(list(again.metrics.values()), list(ci.metrics.values()))  # seeded


def test_metric_draws_are_the_bootstrap_resamples_and_pair_across_runs():
    """The draws of a metric are the resamples behind its interval (same seed → same percentiles), and two
    runs over the same units get the same draw of people: the same run read twice differs by exactly 0 in
    every resample, while a run over other people has another fingerprint."""
    items = _one_profile_drop()
    point = bs.estimate(items)
    ci = bs.bootstrap(items, point, n_boot=400, seed=3)
    draws = bs.metric_draws(items, ["ru_final", "fe_pooled"], n_boot=400, seed=3)
    assert draws["ru_final"].shape == (400,)
    assert tuple(np.percentile(draws["ru_final"], [2.5, 97.5])) == pytest.approx(ci.metrics["ru_final"])
    again = bs.metric_draws(_one_profile_drop(), ["ru_final"], n_boot=400, seed=3)
    assert bs.units_fingerprint(items.units) == bs.units_fingerprint(_one_profile_drop().units)
    assert np.array_equal(draws["ru_final"] - again["ru_final"], np.zeros(400))
    assert bs.units_fingerprint(items.units) != bs.units_fingerprint(_constant_after_forgetting().units)
