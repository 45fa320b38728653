"""Point estimates of a run and their paired, profile-level bootstrap 95% intervals.

:func:`estimate` computes every number of the registry (:mod:`icu_tasks.continual.registry`) from the items as
scored. :func:`bootstrap` resamples **units** (profiles; a utility unit is its specimen document or
institution), not items: the questions about one person are correlated, and a cell of 16 questions about 2
people carries the information of 2 people, not 16. Units are drawn with replacement *within their stratum*
(each forget task's profiles, the retain-eval, holdout and utility units), so every cell keeps its design.
**One draw per resample is shared by every stage and every cell**: the same people are scored at every stage,
so differences between stages (rebound, the largest RU drop, HFP against FE) stay paired, and the forget,
retain, utility, holdout, likelihood, membership and long-form items of a person move together.

Intervals are percentile intervals. A percentile interval of a bounded or non-smooth statistic (a mean of
``max(0, ·)``, a p-value) can miss its own point estimate; where it does, the interval is extended to the
point and the number is listed in :attr:`Intervals.extended`, so no point estimate lies outside its interval
and the extension is visible. Seeded: the same items, ``n_boot`` and ``seed`` give the same intervals.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from icu_tasks.continual import registry as rg
from icu_tasks.continual.items import RunItems, Units, ones
from icu_tasks.continual.metrics import MetricValue

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
LEVEL = 0.95
#: Resamples computed at once (bounds the memory of the weight matrix and the per-batch arrays).
CHUNK = 250


@dataclass(frozen=True)
class Estimates:
    """A run's numbers as scored: forget matrices ``(T + 1, J)`` per group, series ``(T + 1,)``, metrics."""

    forget: dict[str, np.ndarray]
    series: dict[str, np.ndarray]
    metrics: dict[str, MetricValue]
    mia_scored: bool


@dataclass(frozen=True)
class Intervals:
    """Percentile intervals (last axis ``[lo, hi]``; NaN where undefined) of a run's numbers.

    ``metrics[name]``: ``(lo, hi)``; ``series[name]``: ``(T + 1, 2)``; ``forget[group]``: ``(T + 1, J, 2)``.
    ``extended``: the numbers whose percentile interval missed the point estimate and was extended to it
    (``name`` for a metric, ``name[k]`` for a series entry, ``forget_<group>[k][j]`` for a cell).
    """

    metrics: dict[str, tuple[float, float]]
    series: dict[str, np.ndarray]
    forget: dict[str, np.ndarray]
    extended: tuple[str, ...]
    n_boot: int
    seed: int
    strata: tuple[str, ...]


def estimate(items: RunItems) -> Estimates:
    """Every registered number of ``items`` as scored (each unit once)."""
    forget, series = rg.compute_batch(items, ones(items.units))
    mia = len(items.mia) > 0
    point = rg.point_of(forget, series, mia)
    return Estimates(point.forget, point.series, rg.metric_set(point), mia)


def draw_weights(units: Units, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` resamples of the units, as counts ``(n, n_units)``: within each stratum of m units, m draws
    with replacement (a multinomial with equal probabilities)."""
    W = np.zeros((n, len(units)))
    for s in range(len(units.stratum_names)):
        idx = np.flatnonzero(units.strata == s)
        W[:, idx] = rng.multinomial(idx.size, np.full(idx.size, 1.0 / idx.size), size=n)
    return W


def _percentiles(samples: np.ndarray) -> np.ndarray:
    """Percentile interval over axis 0 of every entry; NaN where no resample is finite."""
    lo_q, hi_q = 100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2
    flat = samples.reshape(samples.shape[0], -1)
    out = np.full((flat.shape[1], 2), math.nan)
    for i in range(flat.shape[1]):
        finite = flat[:, i][np.isfinite(flat[:, i])]
        if finite.size:
            out[i] = np.percentile(finite, [lo_q, hi_q])
    return out.reshape(*samples.shape[1:], 2)


def _hull(ci: np.ndarray, point: np.ndarray, name: str, extended: list[str]) -> np.ndarray:
    """``ci`` extended to hold ``point`` (entries named in ``extended``); NaN where the point is NaN."""
    ci, point = ci.copy(), np.asarray(point, dtype=float)
    flat_ci, flat_p = ci.reshape(-1, 2), point.reshape(-1)
    for i, p in enumerate(flat_p):
        if math.isnan(p):
            flat_ci[i] = math.nan
        elif math.isnan(flat_ci[i, 0]) or not flat_ci[i, 0] <= p <= flat_ci[i, 1]:
            where = np.unravel_index(i, point.shape) if point.ndim else ()
            extended.append(name + "".join(f"[{w}]" for w in where))
            lo, hi = (p, p) if math.isnan(flat_ci[i, 0]) else flat_ci[i]
            flat_ci[i] = [min(p, lo), max(p, hi)]
    assert all(math.isnan(p) or lo <= p <= hi for p, (lo, hi) in zip(flat_p, flat_ci, strict=True))
    return ci


def _resamples(items: RunItems, n_boot: int, seed: int):
    """The resampled forget matrices and series, ``CHUNK`` resamples at a time: ``(forget, series)`` per chunk.
    The draws depend only on the units, ``n_boot`` and ``seed``: two runs with the same units get the same."""
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, CHUNK):
        yield rg.compute_batch(items, draw_weights(items.units, min(CHUNK, n_boot - start), rng))


def metric_draws(
    items: RunItems, names: list[str], n_boot: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> dict[str, np.ndarray]:
    """The value of each metric in ``names`` in every resample, shape ``(n_boot,)`` (NaN where undefined).

    Two runs of one data set (the same :func:`units_fingerprint`) drawn with the same ``n_boot`` and ``seed``
    resample the same people in resample i, so ``draws_a[i] - draws_b[i]`` is a paired difference.
    """
    mia = len(items.mia) > 0
    out: dict[str, list[float]] = {n: [] for n in names}
    for f, s in _resamples(items, n_boot, seed):
        for i in range(next(iter(s.values())).shape[0]):
            values = rg.metric_set(rg.point_of(f, s, mia, i))
            for n in names:
                out[n].append(values[n].value)
    return {n: np.asarray(v, dtype=float) for n, v in out.items()}


def units_fingerprint(units: Units) -> str:
    """A short hash of the units, in order, and their strata: equal for runs whose resamples can be paired."""
    pairs = zip(units.keys, units.strata, strict=True)
    text = "\n".join(f"{split}\t{profile}\t{units.stratum_names[k]}" for (split, profile), k in pairs)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def bootstrap(
    items: RunItems, point: Estimates, n_boot: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> Intervals | None:
    """Paired profile-level intervals of every number in ``point``; None with ``n_boot < 1`` or no units."""
    if n_boot < 1 or len(items.units) == 0:
        return None
    forget: dict[str, list[np.ndarray]] = {g: [] for g in point.forget}
    series: dict[str, list[np.ndarray]] = {n: [] for n in point.series}
    metrics: dict[str, list[float]] = {n: [] for n in point.metrics}
    for f, s in _resamples(items, n_boot, seed):
        for g in forget:
            forget[g].append(f[g])
        for n in series:
            series[n].append(s[n])
        for i in range(next(iter(s.values())).shape[0]):
            for n, mv in rg.metric_set(rg.point_of(f, s, point.mia_scored, i)).items():
                metrics[n].append(mv.value)
    extended: list[str] = []
    return Intervals(
        metrics={
            n: tuple(_hull(_percentiles(np.asarray(v)), np.asarray(point.metrics[n].value), n, extended))
            for n, v in metrics.items()
        },
        series={
            n: _hull(_percentiles(np.concatenate(v)), point.series[n], n, extended) for n, v in series.items()
        },
        forget={
            g: _hull(_percentiles(np.concatenate(v)), point.forget[g], f"forget_{g}", extended)
            for g, v in forget.items()
        },
        extended=tuple(extended),
        n_boot=n_boot,
        seed=seed,
        strata=items.units.stratum_names,
    )
