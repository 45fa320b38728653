"""Seed-level aggregation (pure maths, fast): means and Student-t intervals over seeds, paired differences,
the ranking with ties, and the comparison built from report summaries through the headline adapter.

Every expected number is computed by hand in the comments (t_{0.975, 2} = 4.302653, t_{0.975, 1} = 12.706205).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from icu_tasks.continual.seeds import (
    paired_difference,
    profile_paired_difference,
    rank_methods,
    seed_interval,
    t_interval,
)
from icu_tasks.report.comparison import aggregate, comparison_markdown
from icu_tasks.report.headline import HEADLINE, headline_metrics

# a and b: b is lower on every seed by 0.10, 0.05, 0.10; c swings both ways around a
A = {0: 0.6, 1: 0.7, 2: 0.8}
B = {0: 0.5, 1: 0.65, 2: 0.7}
C = {0: 0.9, 1: 0.4, 2: 0.75}


def test_t_interval_by_hand():
    # mean 0.7, s 0.1, sem 0.1 / sqrt(3) = 0.0577350, half width 4.302653 * 0.0577350 = 0.2484138
    got = seed_interval(A)
    assert got.n == 3 and got.mean == pytest.approx(0.7)
    assert (got.lo, got.hi) == pytest.approx((0.4515862, 0.9484138), abs=1e-6)
    # two seeds: mean 0.55, s 0.0707107, sem 0.05, half 12.706205 * 0.05 = 0.6353102
    two = t_interval([0.5, 0.6])
    assert (two.lo, two.hi) == pytest.approx((-0.0853102, 1.1853102), abs=1e-6)


def test_undefined_seeds_are_left_out_and_one_seed_has_no_interval():
    got = seed_interval({0: None, 1: 0.5, 2: math.nan})
    assert got.n == 1 and got.mean == 0.5 and math.isnan(got.lo) and math.isnan(got.hi)
    assert got.contains_zero()  # no interval: no claim
    assert seed_interval({}).n == 0 and math.isnan(seed_interval({}).mean)
    assert got.to_json() == {"mean": 0.5, "lo": None, "hi": None, "n": 1}


def test_paired_difference_by_hand():
    # d = 0.10, 0.05, 0.10: mean 0.0833333, s 0.0288675, sem 0.0166667, half 0.0717109
    d = paired_difference(A, B)
    assert d.n == 3 and d.mean == pytest.approx(0.0833333, abs=1e-6)
    assert (d.lo, d.hi) == pytest.approx((0.0116224, 0.1550443), abs=1e-6)
    assert not d.contains_zero()
    # unpaired, the two intervals overlap: pairing is what separates them
    assert seed_interval(B).hi > seed_interval(A).lo
    # only common seeds pair: seed 3 of A has no partner
    assert paired_difference({**A, 3: 0.0}, B).n == 3
    # a - c = -0.3, 0.3, 0.05: contains 0
    assert paired_difference(A, C).contains_zero()


def test_ranking_marks_ties():
    rows = rank_methods({"a": A, "b": B, "c": C}, higher_is_better=True)
    table = {r.method: (r.rank, r.beaten_by, r.tied_with) for r in rows}
    assert table == {"a": (1, [], ["c"]), "b": (2, ["a"], ["c"]), "c": (1, [], ["a", "b"])}
    assert [r.method for r in rows] == ["a", "c", "b"]  # rank, then mean (a 0.700 > c 0.683)
    # lower is better: b beats a
    low = {r.method: (r.rank, r.beaten_by) for r in rank_methods({"a": A, "b": B}, higher_is_better=False)}
    assert low == {"b": (1, []), "a": (2, ["b"])}
    # a method without any defined value is left out
    assert [r.method for r in rank_methods({"a": A, "x": {0: None}})] == ["a"]


def _summary(icu: float, steps: int) -> dict:
    """A report.json run summary as report/summary.py writes it (only what the adapter reads)."""
    metrics = {key: 0.5 for key in HEADLINE if key != "steps_total"} | {"icu": icu}
    return {"metrics": metrics, "training": {"steps_total": steps}}


def test_headline_adapter_reads_a_report_summary():
    got = headline_metrics(_summary(0.42, 120))
    assert list(got) == list(HEADLINE) and got["icu"] == 0.42 and got["steps_total"] == 120
    assert headline_metrics({"metrics": {}})["ru"] is None  # a missing metric is None, not an error


def test_aggregate_and_markdown():
    entries = [
        {"method": m, "seed": s, "metrics": headline_metrics(_summary(values[s], 10 * (s + 1)))}
        for m, values in (("a", A), ("b", B), ("c", C))
        for s in values
    ]
    agg = aggregate(entries)
    assert agg["seeds"] == [0, 1, 2] and agg["methods"] == ["a", "b", "c"]
    assert agg["summary"]["a"]["icu"]["mean"] == pytest.approx(0.7)
    assert agg["summary"]["a"]["steps_total"] == {"mean": 20.0, "lo": pytest.approx(-4.84, abs=0.01),
                                                  "hi": pytest.approx(44.84, abs=0.01), "n": 3}  # fmt: skip
    ab = next(d for d in agg["paired"]["icu"] if (d["a"], d["b"]) == ("a", "b"))
    assert ab["mean"] == pytest.approx(0.0833333, abs=1e-6) and ab["tie"] is False
    ranks = {r["method"]: r["rank"] for r in agg["ranking"]["icu"]}
    assert ranks == {"a": 1, "c": 1, "b": 2}
    # a metric equal in every run and seed: all tied (zero-width intervals of a zero difference contain 0)
    assert all(r["rank"] == 1 for r in agg["ranking"]["ru"])
    md = comparison_markdown(agg)
    assert "| 1 | a | 0.700 [0.452, 0.948] | 3 | — | c |" in md
    assert "| 2 | b | 0.617 [0.358, 0.875] | 3 | a | c |" in md
    assert "| a | b | 0.083 [0.012, 0.155] | 3 | no |" in md


def test_profile_paired_difference_by_hand():
    """Per-resample differences averaged over seeds: seed 0 gives 1, 2, 3, 4 (b draws all 0), seed 1 gives 0
    (the same draws), so the mean differences are 0.5, 1, 1.5, 2; the point is the mean of the seeds' point
    differences, (2.5 − 0 + 1 − 1) / 2 = 1.25, and the 95 % percentile interval of [0.5, 1, 1.5, 2] is
    [0.5375, 1.9625] (numpy's linear interpolation: 0.5 + 0.075 · 0.5 and 2 − 0.075 · 0.5)."""
    a, b = {0: 2.5, 1: 1.0}, {0: 0.0, 1: 1.0}
    draws_a = {0: ("u", np.array([1.0, 2.0, 3.0, 4.0])), 1: ("v", np.ones(4))}
    draws_b = {0: ("u", np.zeros(4)), 1: ("v", np.ones(4))}
    d = profile_paired_difference(a, b, draws_a, draws_b)
    assert (d.mean, d.lo, d.hi, d.n) == (1.25, pytest.approx(0.5375), pytest.approx(1.9625), 2)
    assert not d.contains_zero()
    # a seed whose runs did not score the same people (other units) cannot be paired: left out
    other = {0: ("u", draws_a[0][1]), 1: ("w", np.ones(4))}
    assert profile_paired_difference(a, b, other, draws_b).n == 1
    assert profile_paired_difference(a, b, {}, draws_b).n == 0


def test_profile_pairing_in_the_aggregate_ranks_what_the_seeds_cannot():
    """Two seeds where a beats b by 0.1 and 0.3: the seed-level interval (t with 1 df) contains 0, while the
    profile-paired draws (the same people in both runs: a − b is 0.1 and 0.3 in every resample, mean 0.2)
    separate them."""
    rng = np.random.default_rng(0)
    entries = []
    for s, (va, vb) in enumerate(((0.6, 0.5), (0.8, 0.5))):
        noise = rng.uniform(-0.05, 0.05, 200)
        for method, value in (("a", va), ("b", vb)):
            metrics = headline_metrics(_summary(value, 10))
            draws = {"n": 200, "seed": 0, "units": f"seed{s}", "metrics": {"icu": list(value + noise)}}
            entries.append({"method": method, "seed": s, "metrics": metrics, "draws": draws})
    agg = aggregate(entries)
    assert {r["method"]: r["rank"] for r in agg["ranking"]["icu"]} == {"a": 1, "b": 1}  # over seeds: a tie
    prof = agg["by_profiles"]
    assert {r["method"]: r["rank"] for r in prof["ranking"]["icu"]} == {"a": 1, "b": 2}
    (ab,) = prof["paired"]["icu"]
    assert (
        ab["mean"] == pytest.approx(0.2) and ab["lo"] == pytest.approx(0.2) and ab["hi"] == pytest.approx(0.2)
    )
    assert "paired over profiles within seeds" in comparison_markdown(agg)


def test_markdown_formats_p_values_and_survives_a_json_round_trip():
    entries = [
        {
            "method": m,
            "seed": s,
            "metrics": {**headline_metrics(_summary(0.5, 10)), "forget_quality_pooled": p},
        }
        for m, p in (("a", 2e-20), ("b", 0.3))
        for s in (0, 1, 2)
    ]
    agg = aggregate(entries)
    md = comparison_markdown(agg)
    # a p-value far below 0.001 keeps its magnitude instead of printing as 0.000
    assert "| a | 2.0e-20 [2.0e-20, 2.0e-20] | 3 |" in md and "3.0e-01" in md
    # comparison.json is written with sorted keys: the tables keep the headline order when read back
    assert comparison_markdown(json.loads(json.dumps(agg, sort_keys=True))) == md
