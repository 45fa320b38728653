"""The metric set of a continual run per forget view, and its bootstrap 95% intervals.

:func:`metric_set` computes every metric of :mod:`icu_tasks.continual.metrics` from the matrices (per forget view
VQA, QA and ``pooled`` — both views' items together — plus RU, RU_final and stability, and the headline ICU
score per view; ``icu`` is the pooled one). :func:`bootstrap` resamples the items *within each cell* (each
forget cell A[k][j], each R[k], U[k] and the base rate B[0]) with replacement, recomputes the matrices and the
whole metric set per resample, and reports percentile intervals. Seeded: the same run, ``n_boot`` and ``seed``
give the same intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from icu_tasks.continual import metrics as im
from icu_tasks.continual import retention
from icu_tasks.data.schema import VIEWS
from icu_tasks.report.results import ContinualRun

POOLED = "pooled"
#: The forget views metrics are reported for: each view alone and both pooled.
FORGET_VIEWS: tuple[str, ...] = (*VIEWS, POOLED)
#: Per-view metrics (key ``<name>_<view>``).
VIEW_METRICS: tuple[str, ...] = ("icu", "fe", "hfp", "rebound", "collateral", "over_forgetting")
#: Run-level metrics (retain/utility side).
RUN_METRICS: tuple[str, ...] = ("ru", "ru_final", "stability")
DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
LEVEL = 0.95


def metric_set(
    forget: dict[str, np.ndarray], base: dict[str, float | None], R: np.ndarray, U: np.ndarray
) -> dict[str, im.MetricValue]:
    """Every metric of one run: ``<metric>_<view>`` for each forget view in ``forget``, plus RU, RU_final,
    stability and ``icu`` (= ``icu_pooled`` when a pooled view is given). ``base[view]`` is B[0] or None."""
    out: dict[str, im.MetricValue] = {
        "ru": retention.retained_utility(R, U),
        "ru_final": retention.retained_utility_final(R, U),
        "stability": retention.stability(R, U),
    }
    for view, A in forget.items():
        b = base.get(view)
        fe = im.forgetting_effectiveness(A, b)
        hfp = im.historical_forgetting_preservation(A, b)
        out[f"fe_{view}"], out[f"hfp_{view}"] = fe, hfp
        out[f"rebound_{view}"] = im.rebound(A, b)
        out[f"collateral_{view}"] = im.collateral(A, b)
        out[f"over_forgetting_{view}"] = im.over_forgetting(A, b)
        out[f"icu_{view}"] = im.icu_score(fe.value, hfp.value, out["ru_final"].value)
    if f"icu_{POOLED}" in out:
        out["icu"] = out[f"icu_{POOLED}"]
    return out


def _has_items(run: ContinualRun) -> bool:
    return bool(run.forget_items) and bool(run.utility_items)


def _cat(*arrays: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(a, dtype=float) for a in arrays]) if arrays else np.zeros(0)


def _mean(items: np.ndarray) -> float:
    return float(items.mean()) if items.size else math.nan


def pooled_forget(run: ContinualRun) -> np.ndarray:
    """A[k][j] over both views' items together (the mean of the two views when no items are kept)."""
    if not _has_items(run):
        with np.errstate(invalid="ignore"):
            return np.nanmean(np.stack([run.forget[v] for v in VIEWS]), axis=0)
    shape = run.forget[VIEWS[0]].shape
    out = np.full(shape, math.nan)
    for k in range(shape[0]):
        for i in range(shape[1]):
            out[k, i] = _mean(_cat(*(run.forget_items[v][k][i] for v in VIEWS)))
    return out


def base_rates(run: ContinualRun) -> dict[str, float | None]:
    """B[0] per forget view (pooled: both views' holdout items); None where no holdout item was scored."""
    out: dict[str, float | None] = {}
    for view in VIEWS:
        b = run.holdout.get(view)
        out[view] = None if b is None or math.isnan(b[0]) else float(b[0])
    pooled = _cat(*(run.holdout_items[v][0] for v in VIEWS)) if run.holdout_items else np.zeros(0)
    out[POOLED] = _mean(pooled) if pooled.size else None
    return out


def run_metrics(run: ContinualRun) -> dict[str, im.MetricValue]:
    """:func:`metric_set` of a loaded run (all three forget views, B[0] from its holdout split if scored)."""
    forget = {view: run.forget[view] for view in VIEWS} | {POOLED: pooled_forget(run)}
    return metric_set(forget, base_rates(run), run.retain, run.utility)


@dataclass(frozen=True)
class Intervals:
    """Percentile intervals (``[lo, hi]`` in the last axis; NaN where undefined) of a run's numbers.

    ``metrics[key]`` for every key of :func:`metric_set`; ``forget[view]`` has shape ``(T + 1, J, 2)``;
    ``retain``, ``utility`` and ``ru`` (RU_k) have shape ``(T + 1, 2)``.
    """

    metrics: dict[str, tuple[float, float]]
    forget: dict[str, np.ndarray]
    retain: np.ndarray
    utility: np.ndarray
    ru: np.ndarray
    n_boot: int
    seed: int


def _draw(items: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``n_boot`` resampled means of one cell's items (NaN for an empty cell)."""
    if items.size == 0:
        return np.full(n_boot, math.nan)
    return items[rng.integers(0, items.size, size=(n_boot, items.size))].mean(axis=1)


def _interval(samples: np.ndarray) -> np.ndarray:
    """Percentile interval over the resamples (axis 0) of every entry; NaN where no resample is finite."""
    lo_q, hi_q = 100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2
    samples = np.asarray(samples, dtype=float)
    out = np.full((*samples.shape[1:], 2), math.nan)
    flat, res = samples.reshape(samples.shape[0], -1), out.reshape(-1, 2)
    for i in range(flat.shape[1]):
        finite = flat[:, i][np.isfinite(flat[:, i])]
        if finite.size:
            res[i] = np.percentile(finite, [lo_q, hi_q])
    return res.reshape(out.shape)


def bootstrap(
    run: ContinualRun, n_boot: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> Intervals | None:
    """Bootstrap intervals of every matrix cell and every metric of ``run``; None if it kept no items.

    Each cell's items (forget A[k][j] per view, pooled retain R[k], utility U[k], holdout B[0]) are resampled
    independently with replacement, ``n_boot`` times, from one generator seeded with ``seed``.
    """
    if not _has_items(run) or n_boot < 1:
        return None
    rng = np.random.default_rng(seed)
    T1, J = run.forget[VIEWS[0]].shape
    items = {view: run.forget_items[view] for view in VIEWS}
    items[POOLED] = [[_cat(*(run.forget_items[v][k][i] for v in VIEWS)) for i in range(J)] for k in range(T1)]
    forget_b = {
        view: np.stack(
            [np.stack([_draw(items[view][k][i], n_boot, rng) for i in range(J)], -1) for k in range(T1)], 1
        )
        for view in FORGET_VIEWS
    }  # (n_boot, T + 1, J)
    retain_b = np.stack(
        [_draw(_cat(*(run.retain_items[v][k] for v in VIEWS)), n_boot, rng) for k in range(T1)], 1
    )
    utility_b = np.stack([_draw(run.utility_items[k], n_boot, rng) for k in range(T1)], 1)
    hold = {view: run.holdout_items[view][0] for view in VIEWS} if run.holdout_items else {}
    if hold:
        hold[POOLED] = _cat(*hold.values())
    base_b = {
        view: _draw(hold[view], n_boot, rng) if hold.get(view, np.zeros(0)).size else None
        for view in FORGET_VIEWS
    }
    values: dict[str, list[float]] = {}
    ru_b = np.full((n_boot, T1), math.nan)
    for b in range(n_boot):
        base = {view: None if base_b[view] is None else float(base_b[view][b]) for view in FORGET_VIEWS}
        forget = {view: forget_b[view][b] for view in FORGET_VIEWS}
        for key, mv in metric_set(forget, base, retain_b[b], utility_b[b]).items():
            values.setdefault(key, []).append(mv.value)
        ru_b[b] = retention.retained_utility_per_stage(retain_b[b], utility_b[b])
    return Intervals(
        metrics={key: tuple(_interval(np.asarray(v))) for key, v in values.items()},
        forget={view: _interval(forget_b[view]) for view in FORGET_VIEWS},
        retain=_interval(retain_b),
        utility=_interval(utility_b),
        ru=_interval(ru_b),
        n_boot=n_boot,
        seed=seed,
    )
