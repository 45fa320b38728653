"""The one registry of continual numbers: per-stage :data:`SERIES` and run-level :data:`METRICS`.

Every entry has a name (its key in ``report.json``), a label and a direction for the tables, a one-line
definition (``doc``, rendered into report.md) and the function that computes it. :func:`compute_batch`,
:func:`metric_set`, the bootstrap (:mod:`icu_tasks.continual.bootstrap`), the report summary, its markdown
tables and ``icu-bench report`` all iterate these tuples, so a new number is one entry here. The formulas are
documented in docs/metrics.md.

* A :class:`Series` maps a :class:`~icu_tasks.continual.series.Batch` (items + weights) to an array
  ``(n, T + 1)``; it may read series listed before it.
* A :class:`Metric` maps a :class:`Point` (one resample's forget matrices and series) and the metrics listed
  before it to a :class:`~icu_tasks.continual.metrics.MetricValue`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from icu_tasks.continual import metrics as im
from icu_tasks.continual import retention
from icu_tasks.continual import series as sr
from icu_tasks.continual.items import RunItems
from icu_tasks.continual.series import GROUPS, POOLED, Batch
from icu_tasks.data.schema import VIEWS

UP, DOWN, NONE = "↑", "↓", ""


@dataclass(frozen=True)
class Series:
    """A per-stage number: ``compute(batch)`` → ``(n, T + 1)``; ``table`` = the items it reads."""

    name: str
    label: str
    direction: str
    doc: str
    compute: Callable[[Batch], np.ndarray]
    table: str
    group: str | None = None


@dataclass(frozen=True)
class Point:
    """One resample (or the data as scored): forget matrices per group and every series, each ``(T + 1,)``."""

    forget: dict[str, np.ndarray]
    series: dict[str, np.ndarray]
    mia_scored: bool

    def base(self, group: str) -> float | None:
        """B[0] of a group: the vanilla model's accuracy on holdout items; None if none was scored."""
        b = self.series[f"holdout_{group}"][0]
        return None if math.isnan(b) else float(b)


@dataclass(frozen=True)
class Metric:
    """A run-level number: ``compute(point, done)`` with ``done`` the metrics computed before it.

    ``family`` + ``group`` place a per-view metric in the per-view table; ``overview`` puts it in the
    comparison table and the ``icu-bench report`` line.
    """

    name: str
    label: str
    direction: str
    doc: str
    compute: Callable[[Point, dict[str, im.MetricValue]], im.MetricValue]
    family: str
    group: str | None = None
    overview: bool = False


def _group_series() -> list[Series]:
    out = []
    for g in GROUPS:
        out += [
            Series(f"holdout_{g}", f"B {g}", NONE, "accuracy on never-seen holdout items (B[k]; B[0] = base rate)",
                   sr.accuracy("holdout", g), "accuracy", g),
            Series(f"prob_task_k_{g}", "P task k", DOWN, "answer probability, forget items of task k",
                   sr.likelihood("prob", "task_k", g), "likelihood", g),
            Series(f"prob_earlier_{g}", "P tasks < k", DOWN, "answer probability, forget items of tasks j < k",
                   sr.likelihood("prob", "earlier", g), "likelihood", g),
            Series(f"tr_task_k_{g}", "TR task k", UP, "truth-ratio statistic mean min(R, 1/R), task k",
                   sr.likelihood("tr", "task_k", g), "likelihood", g),
            Series(f"tr_earlier_{g}", "TR tasks < k", UP, "truth-ratio statistic, tasks j < k",
                   sr.likelihood("tr", "earlier", g), "likelihood", g),
            Series(f"prob_retain_{g}", "P retain", UP, "answer probability, retain-eval items",
                   sr.likelihood("prob", "retain_eval", g), "likelihood", g),
            Series(f"tr_retain_{g}", "TR retain", UP, "truth-ratio statistic mean max(0, 1 − R), retain-eval",
                   sr.likelihood("tr", "retain_eval", g), "likelihood", g),
            Series(f"prob_holdout_{g}", "P holdout", NONE, "answer probability, holdout items",
                   sr.likelihood("prob", "holdout", g), "likelihood", g),
            Series(f"forget_quality_{g}", "forget quality", UP,
                   "KS p-value: truth ratios of requested forget items vs holdout items under the vanilla",
                   sr.quality(g), "likelihood", g),
            Series(f"auc_loss_{g}", "AUC LOSS", NONE, "MIA AUC by LOSS, requested forget items vs holdout",
                   sr.mia_auc("loss", g), "mia", g),
            Series(f"auc_zlib_{g}", "AUC zlib", NONE, "MIA AUC by zlib, requested forget items vs holdout",
                   sr.mia_auc("zlib", g), "mia", g),
            Series(f"privacy_loss_{g}", "privacy LOSS", UP, "1 − 2·|AUC LOSS − 0.5|",
                   sr.privacy("loss", g), "mia", g),
            Series(f"privacy_zlib_{g}", "privacy zlib", UP, "1 − 2·|AUC zlib − 0.5|",
                   sr.privacy("zlib", g), "mia", g),
        ]  # fmt: skip
    return out


#: Per-stage numbers, in computation (and table) order.
SERIES: tuple[Series, ...] = (
    Series("retain", "retain", UP, "retain-eval accuracy R[k], both views", sr.accuracy("retain_eval", POOLED),
           "accuracy"),
    *(Series(f"retain_{v}", f"retain {v.upper()}", UP, f"retain-eval accuracy, {v.upper()} items",
             sr.accuracy("retain_eval", v), "accuracy", v) for v in VIEWS),
    Series("utility", "utility", UP, "utility accuracy U[k]", sr.accuracy("utility", POOLED), "accuracy"),
    Series("ru", "RU_k", UP, "½ (R[k]/R[0] + U[k]/U[0])", sr.ru, "accuracy"),
    *_group_series(),
    Series("fluency", "fluency", UP, "n-gram entropy (bits) of long-form summaries, forget + retain-eval",
           sr.longform("entropy", "forget+retain_eval"), "longform"),
    Series("repetition", "rep", DOWN, "repeated 3-gram fraction of long-form summaries",
           sr.longform("repetition", "forget+retain_eval"), "longform"),
    Series("leak_requested", "leak req.", DOWN, "leakage (ROUGE-L recall of private values), tasks j ≤ k",
           sr.longform("leakage", "forget", "requested"), "longform"),
    Series("leak_pending", "leak pending", NONE, "leakage of forget profiles not yet requested (j > k)",
           sr.longform("leakage", "forget", "pending"), "longform"),
    Series("leak_retain", "leak R", UP, "leakage of retain-eval profiles (kept knowledge)",
           sr.longform("leakage", "retain_eval"), "longform"),
)  # fmt: skip


def _final(p: Point, names: list[str], what: str) -> im.MetricValue:
    """The minimum of the named series at the last stage k >= 1 where one of them is defined."""
    stacked = np.stack([p.series[n] for n in names])
    for k in range(stacked.shape[1] - 1, 0, -1):
        finite = stacked[:, k][~np.isnan(stacked[:, k])]
        if finite.size:
            return im.MetricValue(float(finite.min()), (), stage=k)
    return im.MetricValue(math.nan, (f"undefined: {what} not scored at any stage k >= 1",))


def _view_metrics(g: str) -> list[Metric]:
    def forget(fn: Callable) -> Callable:
        return lambda p, d: fn(p.forget[g], p.base(g))

    def icu(p: Point, d: dict[str, im.MetricValue]) -> im.MetricValue:
        priv = d[f"privacy_{g}"].value if p.mia_scored else math.nan
        return im.icu_score(d[f"fe_{g}"].value, d[f"hfp_{g}"].value, d["ru_final"].value, priv)

    ov = g != POOLED
    return [
        Metric(f"fe_{g}", "FE", UP, "mean_k f[k][k]: task k forgotten right after stage k",
               forget(im.forgetting_effectiveness), "fe", g, ov),
        Metric(f"hfp_{g}", "HFP", UP, "mean over k ≥ 2, j < k of f[k][j]: earlier tasks stay forgotten",
               forget(im.historical_forgetting_preservation), "hfp", g, ov),
        Metric(f"rebound_{g}", "rebound", DOWN, "mean over k ≥ 2, j < k of max(0, A[k][j] − A[j][j])",
               forget(im.rebound), "rebound", g, ov),
        Metric(f"collateral_{g}", "collateral", DOWN, "mean over k ≥ 1, j > k of f[k][j]: not yet requested",
               forget(im.collateral), "collateral", g, ov),
        Metric(f"over_forgetting_{g}", "over-forgetting", DOWN, "mean over j ≤ k of max(0, B[0] − A[k][j])",
               forget(im.over_forgetting), "over_forgetting", g),
        Metric(f"privacy_{g}", "privacy", UP,
               "final stage: min(privacy LOSS, privacy zlib), the stronger attack decides",
               lambda p, d: _final(p, [f"privacy_loss_{g}", f"privacy_zlib_{g}"], "privacy"), "privacy", g),
        Metric(f"forget_quality_{g}", "forget quality", UP, "final stage: TOFU KS p-value (high = like never seen)",
               lambda p, d: _final(p, [f"forget_quality_{g}"], "forget quality"), "forget_quality", g),
        Metric(f"icu_{g}", "ICU", UP, "harmonic mean of FE, HFP (FE if undefined), RU final and privacy",
               icu, "icu", g),
    ]  # fmt: skip


def _ru(fn: Callable) -> Callable[[Point, dict], im.MetricValue]:
    return lambda p, d: fn(p.series["retain"], sr.utility_sources(p.series))


#: Run-level metrics, in computation order (a metric may read those before it).
METRICS: tuple[Metric, ...] = (
    Metric("ru", "RU", UP, "mean over scored k ≥ 1 of RU_k (1 = nothing lost)", _ru(retention.retained_utility),
           "ru", overview=True),
    Metric("ru_final", "RU final", UP, "RU at the last scored stage", _ru(retention.retained_utility_final),
           "ru_final", overview=True),
    Metric("ru_max_drop", "largest RU drop", DOWN,
           "max over consecutive scored stages p < k of max(0, RU_p − RU_k); stage = k",
           _ru(retention.largest_drop), "ru_max_drop", overview=True),
    Metric("privacy_loss", "privacy LOSS", UP, "final-stage privacy by LOSS, both views",
           lambda p, d: _final(p, ["privacy_loss_pooled"], "privacy LOSS"), "privacy_loss", overview=True),
    Metric("privacy_zlib", "privacy zlib", UP, "final-stage privacy by zlib, both views",
           lambda p, d: _final(p, ["privacy_zlib_pooled"], "privacy zlib"), "privacy_zlib", overview=True),
    *(m for g in GROUPS for m in _view_metrics(g)),
    Metric("icu", "ICU", UP, "the headline: ICU of both views' items", lambda p, d: d[f"icu_{POOLED}"], "icu",
           overview=True),
)  # fmt: skip
#: Per-view metric families, in per-view table order.
FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(m.family for m in METRICS if m.group is not None))
_ORDER = (
    "icu",
    "fe",
    "hfp",
    "rebound",
    "collateral",
    "ru",
    "ru_final",
    "ru_max_drop",
    "privacy_loss",
    "privacy_zlib",
)
#: The comparison table's metrics (and the ``icu-bench report`` line), in column order.
OVERVIEW: tuple[Metric, ...] = tuple(
    sorted(
        (m for m in METRICS if m.overview),
        key=lambda m: (_ORDER.index(m.family), GROUPS.index(m.group) if m.group else 0),
    )
)


def by_name(name: str) -> Metric:
    """The registered metric called ``name``."""
    return next(m for m in METRICS if m.name == name)


def header(m: Metric | Series) -> str:
    """A table header: label, view (upper-case, pooled omitted) and direction arrow."""
    view = f" {m.group.upper()}" if m.group and m.group != POOLED else ""
    return f"{m.label}{view} {m.direction}".strip()


def compute_batch(items: RunItems, W: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Forget matrices ``(n, T + 1, J)`` per group and every series ``(n, T + 1)`` for the weights ``W``."""
    batch = Batch(items, W)
    forget = {g: sr.forget_matrix(batch, g) for g in GROUPS}
    sr.external_series(batch)
    for s in SERIES:
        batch.done[s.name] = s.compute(batch)
    return forget, batch.done


def point_of(forget: dict[str, np.ndarray], series: dict[str, np.ndarray], mia: bool, i: int = 0) -> Point:
    """Resample ``i`` of a batch as a :class:`Point`."""
    return Point({g: a[i] for g, a in forget.items()}, {n: s[i] for n, s in series.items()}, mia)


def metric_set(point: Point) -> dict[str, im.MetricValue]:
    """Every metric of :data:`METRICS` for one point, in registry order."""
    done: dict[str, im.MetricValue] = {}
    for m in METRICS:
        done[m.name] = m.compute(point, done)
    return done
