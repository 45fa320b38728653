"""Per-stage series (one value per stage 0..T) from a run's items under a batch of unit weights.

Each function here takes a :class:`Batch` (the run's :class:`~icu_tasks.continual.items.RunItems`, the weights
``W`` of shape ``(n, n_units)`` and the series computed so far) and returns an array ``(n, T + 1)``; the
registry (:mod:`icu_tasks.continual.registry`) names them. With ``W`` all ones they are the numbers as scored;
with bootstrap weights, the same numbers for resampled profiles.

*Requested* tasks at stage k are j ≤ k. For membership inference and forget quality, stage 0 (nothing
requested yet) uses every task the run will forget (1..T): the vanilla model's reference for the people that
will be forgotten.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from icu_tasks.continual import retention
from icu_tasks.continual.items import ItemTable, RunItems, expand, weighted_auc, weighted_means
from icu_tasks.continual.privacy import forget_quality, privacy_of_auc
from icu_tasks.data.schema import VIEWS

POOLED = "pooled"
#: Item groups of the per-view numbers: each view alone and both views' items together.
GROUPS: tuple[str, ...] = (*VIEWS, POOLED)


def views_of(group: str) -> tuple[str, ...]:
    """The item views of a group (``pooled`` = every view)."""
    return VIEWS if group == POOLED else (group,)


@dataclass
class Batch:
    """What a series function reads: the items, the weights and the series already computed."""

    items: RunItems
    W: np.ndarray
    done: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.W.shape[0])

    @property
    def stages(self) -> range:
        return range(self.items.stages + 1)


SeriesFn = Callable[[Batch], np.ndarray]
#: Which rows of a table enter stage k's value: a boolean per row, from the row's stage (and task).
Rows = Callable[[ItemTable, Batch], np.ndarray]


def _per_stage(table: ItemTable, values: np.ndarray, rows: Rows, batch: Batch) -> np.ndarray:
    """The weighted mean of ``values`` per stage over the rows ``rows`` picks (each at its own stage)."""
    cell = np.where(rows(table, batch), table.stage, -1)
    return weighted_means(table.unit, values, cell, len(batch.stages), batch.W)


def _in(table: ItemTable, split: str | tuple[str, ...], group: str) -> np.ndarray:
    """Rows of ``split`` (or of any of several splits) and of ``group``'s views."""
    splits = (split,) if isinstance(split, str) else split
    return np.isin(table.split, list(splits)) & np.isin(table.view, list(views_of(group)))


def requested(k: int, T: int) -> range:
    """Forget tasks requested by stage k (j ≤ k); at stage 0 every task the run will forget (1..T)."""
    return range(1, (k if k >= 1 else T) + 1)


def accuracy(split: str, group: str) -> SeriesFn:
    """Mean accuracy of ``split``'s items of ``group`` per stage (retain R[k], utility U[k], holdout B[k])."""

    def fn(b: Batch) -> np.ndarray:
        t = b.items.accuracy
        return _per_stage(t, t.values["score"], lambda t, b: _in(t, split, group), b)

    return fn


def forget_matrix(b: Batch, group: str) -> np.ndarray:
    """A[k][j] of ``group``'s items for every weight vector: shape ``(n, T + 1, J)``."""
    t, J = b.items.accuracy, b.items.tasks
    rows = _in(t, "forget", group) & (t.task >= 1) & (t.task <= J)
    cell = np.where(rows, t.stage * J + t.task - 1, -1)
    means = weighted_means(t.unit, t.values["score"], cell, len(b.stages) * J, b.W)
    return means.reshape(b.n, len(b.stages), J)


#: Series-name prefix of an external utility task's per-stage value (``utility:<task>``).
EXTERNAL_UTILITY = "utility:"


def utility_sources(series: dict[str, np.ndarray]) -> np.ndarray | dict[str, np.ndarray]:
    """RU's utility input from a point's series: the built-in ``utility`` alone, or with every external
    utility task (``{"U": built-in, "<task>": ...}``; :mod:`icu_tasks.continual.retention`)."""
    external = {
        n.removeprefix(EXTERNAL_UTILITY): v for n, v in series.items() if n.startswith(EXTERNAL_UTILITY)
    }
    return {"U": series["utility"], **external} if external else series["utility"]


def external_series(b: Batch) -> None:
    """Add ``utility:<task>`` for every external utility task of the items: its per-stage value, the same in
    every resample (an external task's items carry no profile to resample)."""
    for task, values in b.items.external.items():
        b.done[EXTERNAL_UTILITY + task] = np.tile(np.asarray(values, float), (b.n, 1))


def ru(b: Batch) -> np.ndarray:
    """RU_k per weight vector, from the ``retain`` and ``utility`` series (and external utility tasks)."""
    return np.stack(
        [
            retention.retained_utility_per_stage(
                b.done["retain"][i], utility_sources({n: v[i] for n, v in b.done.items()})
            )
            for i in range(b.n)
        ]
    )


def _tr_term(t: ItemTable) -> np.ndarray:
    """TOFU's per-item truth-ratio term: forget min(R, 1/R) (1 = forgotten), else max(0, 1 − R) (1 = kept)."""
    r = t.values["ratio"]
    with np.errstate(divide="ignore"):
        return np.where(t.split == "forget", np.minimum(r, 1.0 / r), np.maximum(0.0, 1.0 - r))


def likelihood(value: str, which: str, group: str) -> SeriesFn:
    """Answer probability (``value="prob"``) or the truth-ratio statistic (``"tr"``) per stage of the forget
    items of task k (``which="task_k"``), of the earlier tasks j < k (``"earlier"``), or of a split."""

    def rows(t: ItemTable, b: Batch) -> np.ndarray:
        if which == "task_k":
            return _in(t, "forget", group) & (t.task == t.stage) & (t.stage >= 1)
        if which == "earlier":
            return _in(t, "forget", group) & (t.task >= 1) & (t.task < t.stage)
        return _in(t, which, group)

    def fn(b: Batch) -> np.ndarray:
        t = b.items.likelihood
        return _per_stage(t, t.values["prob"] if value == "prob" else _tr_term(t), rows, b)

    return fn


def mia_auc(score: str, group: str) -> SeriesFn:
    """MIA AUC per stage: the requested tasks' forget items (members) vs the holdout items, by ``score``
    (``loss`` or ``zlib``); 1 = memorised, 0.5 = like never seen, 0 = marked by being *less* likely."""

    def fn(b: Batch) -> np.ndarray:
        t, views = b.items.mia, views_of(group)
        out = np.full((b.n, len(b.stages)), math.nan)
        member = t.values["member"] == 1
        for k in b.stages:
            m = t.select(stage=k, split="forget", views=views, tasks=requested(k, b.items.stages)) & member
            o = t.select(stage=k, split="holdout", views=views) & ~member
            x = t.values[score]
            out[:, k] = weighted_auc(x[m], t.unit[m], x[o], t.unit[o], b.W)
        return out

    return fn


def privacy(score: str, group: str) -> SeriesFn:
    """Privacy = 1 − 2·|AUC − 0.5| per stage, from the ``auc_<score>_<group>`` series."""
    return lambda b: privacy_of_auc(b.done[f"auc_{score}_{group}"])


def quality(group: str) -> SeriesFn:
    """TOFU forget quality per stage: KS p-value between the truth ratios of the requested forget items at
    stage k and of the holdout items under the vanilla model (stage 0)."""

    def fn(b: Batch) -> np.ndarray:
        t, views = b.items.likelihood, views_of(group)
        r = t.values["ratio"]
        ref = t.select(stage=0, split="holdout", views=views)
        out = np.full((b.n, len(b.stages)), math.nan)
        for k in b.stages:
            m = t.select(stage=k, split="forget", views=views, tasks=requested(k, b.items.stages))
            if not (m.any() and ref.any()):
                continue
            for i in range(b.n):
                w = b.W[i]
                out[i, k] = forget_quality(expand(r[m], t.unit[m], w), expand(r[ref], t.unit[ref], w))
        return out

    return fn


def longform(value: str, split: str, tasks: str = "all") -> SeriesFn:
    """A long-form score per stage over one split, or over ``"forget+retain_eval"``; for the forget split
    ``tasks`` = ``requested`` (j ≤ k, none at stage 0), ``pending`` (j > k) or ``all``."""
    splits = tuple(split.split("+"))

    def rows(t: ItemTable, b: Batch) -> np.ndarray:
        if tasks == "requested":
            return (t.split == "forget") & (t.task >= 1) & (t.task <= t.stage)
        if tasks == "pending":
            return (t.split == "forget") & (t.task > t.stage)
        return np.isin(t.split, list(splits))

    def fn(b: Batch) -> np.ndarray:
        t = b.items.longform
        return _per_stage(t, t.values[value], rows, b)

    return fn
