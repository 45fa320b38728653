"""Per-item scores of a run, grouped by the profile (the *unit*) they are about, and their weighted means.

Every number of a continual report is a mean (or an AUC, or a KS test) over items scored at some stage: the
questions about forget, retain-eval, holdout and utility units. :class:`RunItems` keeps those items as flat
tables (:class:`ItemTable`: one row per scored item, with its stage, split, view, forget task and unit), and
:class:`Units` the units themselves with their *stratum*: a forget profile belongs to its forget task, any other
unit to its split. A utility unit is the specimen document or the institution its questions are about.

A resample is a vector of non-negative integer weights, one per unit (how many times the unit was drawn;
all ones = the data as scored). :func:`weighted_means`, :func:`weighted_auc` and :func:`expand` compute
statistics of a selection of rows under a batch of such weight vectors at once, so the point estimate and every bootstrap
resample go through the same code (:mod:`icu_tasks.continual.bootstrap` draws the weights).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Units",
    "UnitIndex",
    "ItemTable",
    "RunItems",
    "weighted_means",
    "weighted_auc",
    "expand",
    "ones",
]


@dataclass(frozen=True)
class Units:
    """The units of a run: ``keys[u]`` = (split, profile id) and ``strata[u]`` = the stratum index of unit u."""

    keys: tuple[tuple[str, str], ...] = ()
    strata: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    stratum_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.keys)


def stratum_of(split: str, task: int) -> str:
    """The stratum of a unit: ``forget/<task>`` for a forget profile, else its split."""
    return f"forget/{task}" if split == "forget" else split


class UnitIndex:
    """Builds :class:`Units` while items are read: one index per (split, profile id)."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], int] = {}
        self._strata: list[str] = []
        self.unlabelled = 0  # items without a profile id (each became its own unit)

    def add(self, split: str, task: int, profile: str | None) -> int:
        """The index of the unit an item belongs to; an item without a profile id is a unit of its own."""
        if profile is None or profile == "":
            self.unlabelled += 1
            profile = f"item:{self.unlabelled}"
        key = (split, str(profile))
        if key not in self._ids:
            self._ids[key] = len(self._ids)
            self._strata.append(stratum_of(split, task))
        return self._ids[key]

    def freeze(self) -> Units:
        names = tuple(sorted(set(self._strata)))
        index = {name: i for i, name in enumerate(names)}
        return Units(tuple(self._ids), np.array([index[s] for s in self._strata], dtype=int), names)


@dataclass(frozen=True)
class ItemTable:
    """Scored items, one row each: ``stage``, ``split``, ``view``, ``task`` (forget task, 0 = none), ``unit``
    (index into :class:`Units`) and the value columns in ``values`` (same length)."""

    stage: np.ndarray
    split: np.ndarray
    view: np.ndarray
    task: np.ndarray
    unit: np.ndarray
    values: Mapping[str, np.ndarray]

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping], columns: Sequence[str]) -> ItemTable:
        """A table from dicts with keys stage, split, view, task, unit and every name in ``columns``."""
        return cls(
            stage=np.array([r["stage"] for r in rows], dtype=int),
            split=np.array([r["split"] for r in rows], dtype=object),
            view=np.array([r["view"] for r in rows], dtype=object),
            task=np.array([r["task"] for r in rows], dtype=int),
            unit=np.array([r["unit"] for r in rows], dtype=int),
            values={c: np.array([r[c] for r in rows], dtype=float) for c in columns},
        )

    @classmethod
    def empty(cls, columns: Sequence[str]) -> ItemTable:
        return cls.from_rows([], columns)

    def __len__(self) -> int:
        return int(self.stage.shape[0])

    def select(
        self,
        stage: int | None = None,
        split: str | None = None,
        views: Sequence[str] | None = None,
        tasks: Sequence[int] | None = None,
        splits: Sequence[str] | None = None,
    ) -> np.ndarray:
        """A boolean mask of the rows matching every given condition (``splits``: any of these splits)."""
        mask = np.ones(len(self), dtype=bool)
        if stage is not None:
            mask &= self.stage == stage
        if split is not None:
            mask &= self.split == split
        if splits is not None:
            mask &= np.isin(self.split, list(splits))
        if views is not None:
            mask &= np.isin(self.view, list(views))
        if tasks is not None:
            mask &= np.isin(self.task, list(tasks))
        return mask


@dataclass(frozen=True)
class RunItems:
    """Every scored item of a run, by kind, over one set of units.

    ``accuracy`` (column ``score``: the chosen accuracy metric of the forget, retain-eval, holdout and
    utility questions), ``likelihood`` (``prob``, ``ratio``: answer probability and raw truth ratio R),
    ``mia`` (``loss``, ``zlib``, ``member``) and ``longform`` (``entropy``, ``repetition``, ``leakage``).
    ``stages`` is T and ``tasks`` J (forget-task columns). ``external``: per-stage values ``(T + 1,)`` of
    external utility tasks (any lmms-eval task's main metric; NaN where not scored), by task name.
    """

    stages: int
    tasks: int
    units: Units
    accuracy: ItemTable
    likelihood: ItemTable
    mia: ItemTable
    longform: ItemTable
    external: dict[str, np.ndarray] = field(default_factory=dict)


def ones(units: Units) -> np.ndarray:
    """The weights of the data as scored: one draw of every unit, shape ``(1, n_units)``."""
    return np.ones((1, len(units)))


def weighted_means(
    unit: np.ndarray, values: np.ndarray, cell: np.ndarray, n_cells: int, W: np.ndarray
) -> np.ndarray:
    """The mean of ``values`` over each cell's rows under each weight vector: shape ``(len(W), n_cells)``.

    ``cell[i]`` is the cell of row i (-1 = in none) and ``unit[i]`` its unit. An item counts as often as its
    unit was drawn; NaN where a cell has no drawn item. One pass over the rows, whatever the number of cells.
    """
    n_units = W.shape[1]
    keep = cell >= 0
    key = cell[keep] * n_units + unit[keep]
    size = n_cells * n_units
    sums = np.bincount(key, weights=values[keep], minlength=size).reshape(n_cells, n_units)
    counts = np.bincount(key, minlength=size).reshape(n_cells, n_units).astype(float)
    num, den = W @ sums.T, W @ counts.T
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, math.nan)


def weighted_auc(
    members: np.ndarray, member_units: np.ndarray, others: np.ndarray, other_units: np.ndarray, W: np.ndarray
) -> np.ndarray:
    """``P(other score > member score) + ½ P(equal)`` over all weighted (member, other) pairs, per weight
    vector (the Mann-Whitney AUC, lower score = member); NaN where a class has no drawn item.

    The others are sorted once; per weight vector their cumulative weights give, for every member, the
    weight of the others above and equal to it (linear in the number of items, not in the pairs).
    """
    if members.size == 0 or others.size == 0:
        return np.full(W.shape[0], math.nan)
    order = np.argsort(others, kind="mergesort")
    sorted_others = others[order]
    lt = np.searchsorted(sorted_others, members, side="left")  # others below each member
    le = np.searchsorted(sorted_others, members, side="right")  # below or equal
    wo = W[:, other_units[order]]
    cum = np.concatenate([np.zeros((W.shape[0], 1)), np.cumsum(wo, axis=1)], axis=1)
    total = cum[:, -1:]
    above, equal = total - cum[:, le], cum[:, le] - cum[:, lt]
    wm = W[:, member_units]
    num = (wm * (above + 0.5 * equal)).sum(axis=1)
    den = wm.sum(axis=1) * total[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, math.nan)


def expand(values: np.ndarray, units: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The sample a weight vector ``w`` stands for: each value repeated as often as its unit was drawn."""
    return np.repeat(values, w[units].astype(int))
