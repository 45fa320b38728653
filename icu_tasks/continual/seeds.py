"""Across seeds: per-method means with seed-level intervals, paired method differences, and a ranking with ties.

A *seed* is one whole repetition of the benchmark: its own data (different people in different forget tasks,
so also another task order), its own vanilla fine-tune and its own unlearning seed. The item-bootstrap
intervals of one run (:mod:`icu_tasks.continual.bootstrap`) cover only the choice of questions; the variance
between seeds (which people, which vanilla model, float order) is larger, and only repetitions measure it.

Per method and metric the seed values x_1..x_n give the mean and a Student-t 95 % interval
mean ± t_{0.975, n−1} · s / √n (s the sample standard deviation; none for n < 2). Two methods are compared
*paired over seeds*: d_s = x_s(a) − x_s(b) on the seeds both have, with the same t interval on the d_s — the
seed's people and vanilla model affect both methods alike, so pairing removes that share of the variance.
A seed where a metric is undefined (None/NaN) is left out of that metric's mean and of the pairs that use it.

Two methods are also compared *paired over profiles within each seed*: both runs of a seed score the same
people, and their profile bootstraps (:func:`icu_tasks.continual.bootstrap.metric_draws`, same units, same
bootstrap seed) resample the same people in resample i; the mean over seeds of the per-resample differences
gives a percentile interval of the mean difference. It holds the seeds fixed (which people, which vanilla
model): it says whether the difference is larger than the choice of profiles explains, on these seeds, and is
narrower than the seed-level interval, which also covers the variance between repetitions.

Ranking (per metric, with its direction): a method's rank is 1 + the number of methods that beat it
*significantly* (the interval of their paired difference excludes 0 in their favour); methods whose paired
interval with it contains 0 (or is undefined) are listed as tied with it. Nothing is ranked on means alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

LEVEL = 0.95

#: Seed-indexed values of one metric of one method: ``{seed: value or None}``.
SeedValues = Mapping[int, float | None]


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` seeds with its ``LEVEL`` interval (``lo``/``hi`` NaN when ``n`` < 2)."""

    mean: float
    lo: float
    hi: float
    n: int

    def contains_zero(self) -> bool:
        """Whether the interval contains 0 (True when it is undefined: no claim can be made)."""
        return not (self.lo > 0 or self.hi < 0)

    def to_json(self) -> dict[str, float | int | None]:
        def num(x: float) -> float | None:
            return None if math.isnan(x) else float(x)

        return {"mean": num(self.mean), "lo": num(self.lo), "hi": num(self.hi), "n": self.n}


def _defined(values: SeedValues) -> dict[int, float]:
    return {int(s): float(v) for s, v in values.items() if v is not None and not math.isnan(float(v))}


def t_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """Mean of ``values`` and its Student-t interval (scipy.stats.t); NaN bounds for fewer than 2 values."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    n = int(x.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    sem = float(x.std(ddof=1)) / math.sqrt(n)
    if sem == 0.0:
        return Interval(mean, mean, mean, n)
    lo, hi = stats.t.interval(level, n - 1, loc=mean, scale=sem)
    return Interval(mean, float(lo), float(hi), n)


def seed_interval(values: SeedValues, level: float = LEVEL) -> Interval:
    """Mean and seed-level interval of one method's metric (undefined seeds left out)."""
    return t_interval(list(_defined(values).values()), level)


def paired_difference(a: SeedValues, b: SeedValues, level: float = LEVEL) -> Interval:
    """Mean of a − b over the seeds where both are defined, with its paired t interval."""
    da, db = _defined(a), _defined(b)
    common = sorted(set(da) & set(db))
    return t_interval([da[s] - db[s] for s in common], level)


#: Seed-indexed bootstrap draws of one metric of one method: ``{seed: (units fingerprint, draws)}``.
SeedDraws = Mapping[int, tuple[str, np.ndarray]]


def profile_paired_difference(
    a: SeedValues, b: SeedValues, draws_a: SeedDraws, draws_b: SeedDraws, level: float = LEVEL
) -> Interval:
    """Mean over seeds of a − b with the percentile interval of the mean of the per-resample differences,
    over the seeds where both are defined and their draws pair (same units, same number of resamples).

    The interval is extended to hold the point (a percentile interval of a bounded statistic can miss it).
    Undefined (NaN bounds) without a pairable seed.
    """
    da, db = _defined(a), _defined(b)
    seeds = [
        s
        for s in sorted(set(da) & set(db) & set(draws_a) & set(draws_b))
        if draws_a[s][0] == draws_b[s][0] and len(draws_a[s][1]) == len(draws_b[s][1])
    ]
    if not seeds:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(np.mean([da[s] - db[s] for s in seeds]))
    diffs = np.mean(
        [np.asarray(draws_a[s][1], float) - np.asarray(draws_b[s][1], float) for s in seeds], axis=0
    )
    finite = diffs[np.isfinite(diffs)]
    if finite.size == 0:
        return Interval(mean, math.nan, math.nan, len(seeds))
    lo, hi = np.percentile(finite, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return Interval(mean, float(min(lo, mean)), float(max(hi, mean)), len(seeds))


#: A paired difference of two methods' metric: ``(a, b) -> Interval`` of a − b.
Difference = Callable[[str, str], Interval]


@dataclass
class RankRow:
    """One method in a ranking: its rank, seed-level interval, and the methods it is tied with."""

    method: str
    rank: int
    interval: Interval
    beaten_by: list[str] = field(default_factory=list)
    tied_with: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "method": self.method,
            "rank": self.rank,
            **self.interval.to_json(),
            "beaten_by": self.beaten_by,
            "tied_with": self.tied_with,
        }


def rank_methods(
    by_method: Mapping[str, SeedValues],
    higher_is_better: bool = True,
    level: float = LEVEL,
    difference: Difference | None = None,
) -> list[RankRow]:
    """The ranking of the methods on one metric (see the module docstring), best mean first.

    ``difference(a, b)``: the paired interval of a − b (default: paired over seeds). A method without any
    defined seed value is left out.
    """
    methods = [m for m, v in by_method.items() if _defined(v)]
    sign = 1.0 if higher_is_better else -1.0
    diff = difference or (lambda a, b: paired_difference(by_method[a], by_method[b], level))
    rows = []
    for m in methods:
        beaten, tied = [], []
        for other in methods:
            if other == m:
                continue
            d = diff(other, m)
            if d.contains_zero():
                tied.append(other)
            elif sign * d.mean > 0:
                beaten.append(other)
        rows.append(RankRow(m, 1 + len(beaten), seed_interval(by_method[m], level), beaten, tied))
    rows.sort(key=lambda r: (r.rank, -sign * r.interval.mean, r.method))
    return rows


def pairwise_differences(
    by_method: Mapping[str, SeedValues], level: float = LEVEL
) -> list[tuple[str, str, Interval]]:
    """Every pair (a, b), a before b in ``by_method``'s order: the paired interval of a − b."""
    names = list(by_method)
    return [
        (a, b, paired_difference(by_method[a], by_method[b], level))
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    ]


__all__ = [
    "LEVEL",
    "Interval",
    "RankRow",
    "paired_difference",
    "pairwise_differences",
    "profile_paired_difference",
    "rank_methods",
    "seed_interval",
    "t_interval",
]
