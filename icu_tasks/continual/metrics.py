"""The forget-side continual metrics and the ICU score (docs/metrics.md): pure-numpy functions.

FE, HFP, rebound, collateral and over-forgetting read the forget-accuracy matrix, normalised against a base
rate; the retain side (RU, stability, the worst stage) is :mod:`icu_tasks.continual.retention`. Conventions
for every function here:

* ``A`` is a forget-accuracy matrix of shape ``(T + 1, J)``: row ``k`` is the model after stage ``k``
  (row 0 = the vanilla model), column ``i`` is forget task ``i + 1``. Stage ``k`` forgets task ``k``, so the
  paper's ``A[k][j]`` is ``A[k, j - 1]`` here and the diagonal of interest is ``A[k, k - 1]``. ``J >= T``:
  columns of tasks no stage has reached yet (future tasks) are kept; they enter only :func:`collateral`.
* ``base`` is B[0], the vanilla model's accuracy on never-seen (holdout) profiles: what a model that never
  learned the task still gets right by guessing. ``None`` (no holdout split scored) means B[0] = 0.
* Normalised forgetting ``f[k][j] = clip((A[0][j] − A[k][j]) / (A[0][j] − B[0]), 0, 1)``: 0 = as known as
  before, 1 = down to the base rate. Going *below* the base rate is not rewarded (clipped at 1); it is
  reported by :func:`over_forgetting`.
* A task with ``A[0][j] − B[0] < MIN_MARGIN`` (the vanilla model hardly knew it above the base rate) is
  excluded, so no term comes from a tiny denominator; a missing (NaN) ``A[0][j]`` likewise. Exclusions are
  named in the result's ``notes``.
* A stage that was not scored (a partial run, a crashed evaluation, the evaluation schedule) is a row of NaN;
  a forget task the schedule did not score at a stage is a NaN cell. NaN entries are skipped, never imputed,
  and named (stages) or counted (cells) in ``notes``; a metric with nothing left to average is NaN with the
  reason.

Every function returns a :class:`MetricValue` (``value`` + ``notes``; ``stage`` where it names one).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MIN_MARGIN",
    "MetricValue",
    "normalised_forgetting",
    "forgetting_effectiveness",
    "historical_forgetting_preservation",
    "rebound",
    "collateral",
    "over_forgetting",
    "icu_score",
]

#: Smallest A[0][j] − B[0] for which task j's forgetting is measured.
MIN_MARGIN = 0.1

Matrix = Sequence[Sequence[float]] | np.ndarray


@dataclass(frozen=True)
class MetricValue:
    """A metric's value, why it is NaN or what was left out (``notes``), and the stage it names, if any."""

    value: float
    notes: tuple[str, ...] = ()
    stage: int | None = None

    def __float__(self) -> float:
        return float(self.value)


def _as_matrix(A: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    mat = np.asarray(A, dtype=float)
    if mat.ndim != 2 or mat.shape[0] < 1:
        raise ValueError(
            f"a forget-accuracy matrix must be 2-D with rows = stages 0..T, got shape {mat.shape}"
        )
    return mat


def join_ints(items: Iterable[int]) -> str:
    """``1, 2, 3``: stage or task numbers in a note."""
    return ", ".join(str(i) for i in items)


class _Skips:
    """Collects why terms were left out, then renders them as short, deduplicated notes."""

    def __init__(self) -> None:
        self.unknown: set[int] = set()
        self.no_vanilla: set[int] = set()
        self.missing: set[int] = set()
        self.cells = 0  # unscored cells A[k][j] of scored stages left out of the mean

    def scored(self, A: np.ndarray, k: int, j: int) -> bool:
        """Whether A[k][j] was scored; an unscored cell is counted (never imputed)."""
        if math.isnan(A[k, j - 1]):
            self.cells += 1
            return False
        return True

    def task_ok(self, A: np.ndarray, j: int, base: float) -> bool:
        a0 = A[0, j - 1]
        if math.isnan(a0):
            self.no_vanilla.add(j)
            return False
        if a0 - base < MIN_MARGIN:
            self.unknown.add(j)
            return False
        return True

    def notes(self) -> tuple[str, ...]:
        out = []
        if self.unknown:
            out.append(
                f"excluded task(s) {join_ints(sorted(self.unknown))}: the vanilla model did not know them above "
                f"the base rate (A[0][j] − B[0] < {MIN_MARGIN})"
            )
        if self.no_vanilla:
            out.append(f"excluded task(s) {join_ints(sorted(self.no_vanilla))}: not scored at stage 0")
        if self.missing:
            out.append(f"skipped stage(s) {join_ints(sorted(self.missing))}: not scored")
        if self.cells:
            out.append(f"left out {self.cells} unscored cell(s) A[k][j] of scored stages (never imputed)")
        return tuple(out)


def _stages(A: np.ndarray) -> int:
    """T, the number of unlearning stages, checked against the number of task columns."""
    T = A.shape[0] - 1
    if A.shape[1] < T:
        raise ValueError(f"A has {T} stages but only {A.shape[1]} task columns; stage k forgets task k")
    return T


def _base(base: float | None) -> float:
    if base is None or math.isnan(base):
        return 0.0
    return float(base)


def _f(A: np.ndarray, k: int, j: int, base: float) -> float:
    """f[k][j] for a task that passed :meth:`_Skips.task_ok` (NaN if A[k][j] was not scored)."""
    a0 = A[0, j - 1]
    return min(1.0, max(0.0, (a0 - A[k, j - 1]) / (a0 - base)))


def normalised_forgetting(A: Matrix, base: float | None = None) -> np.ndarray:
    """The matrix f of shape ``(T + 1, J)``: ``f[k, j - 1]`` = f[k][j]; NaN for excluded or unscored cells."""
    A, b = _as_matrix(A), _base(base)
    out = np.full(A.shape, math.nan)
    skips = _Skips()
    for j in range(1, A.shape[1] + 1):
        if skips.task_ok(A, j, b):
            for k in range(A.shape[0]):
                if not math.isnan(A[k, j - 1]):
                    out[k, j - 1] = _f(A, k, j, b)
    return out


def _mean(terms: list[float], skips: _Skips, empty: str) -> MetricValue:
    if not terms:
        return MetricValue(math.nan, (f"undefined: {empty}",) + skips.notes())
    return MetricValue(float(np.mean(terms)), skips.notes())


def forgetting_effectiveness(A: Matrix, base: float | None = None) -> MetricValue:
    """FE = mean over k = 1..T of f[k][k]: how much of task k is gone right after stage k (1 = all of it)."""
    A, b = _as_matrix(A), _base(base)
    T = _stages(A)
    if T < 1:
        return MetricValue(math.nan, ("undefined: no unlearning stage (only the vanilla row)",))
    skips, terms = _Skips(), []
    for k in range(1, T + 1):
        if not skips.task_ok(A, k, b):
            continue
        if np.isnan(A[k]).all():
            skips.missing.add(k)
            continue
        if skips.scored(A, k, k):
            terms.append(_f(A, k, k, b))
    return _mean(terms, skips, "no stage with a scored task the vanilla model knew")


def _history_pairs(
    A: np.ndarray, b: float, name: str
) -> tuple[list[tuple[int, int]], _Skips, MetricValue | None]:
    """The (k, j) pairs with k >= 2, j < k that HFP and rebound average over, after the NaN/unknown rules."""
    T = _stages(A)
    if T < 2:
        reason = f"undefined with {T} stage(s): {name} needs a stage k >= 2 with an earlier task j < k"
        return [], _Skips(), MetricValue(math.nan, (reason,))
    skips, pairs = _Skips(), []
    for k in range(2, T + 1):
        if np.isnan(A[k]).all():
            skips.missing.add(k)
            continue
        for j in range(1, k):
            if skips.task_ok(A, j, b) and skips.scored(A, k, j):
                pairs.append((k, j))
    return pairs, skips, None


def historical_forgetting_preservation(A: Matrix, base: float | None = None) -> MetricValue:
    """HFP = mean over k = 2..T and j = 1..k−1 of f[k][j]: whether earlier tasks stay forgotten.

    NaN with a reason for T < 2.
    """
    A, b = _as_matrix(A), _base(base)
    pairs, skips, undefined = _history_pairs(A, b, "HFP")
    if undefined is not None:
        return undefined
    return _mean([_f(A, k, j, b) for k, j in pairs], skips, "no scored (stage k >= 2, task j < k) pair")


def rebound(A: Matrix, base: float | None = None) -> MetricValue:
    """Rebound = mean over k = 2..T and j = 1..k−1 of max(0, A[k][j] − A[j][j]).

    How much accuracy an earlier task regained after the stage that forgot it (0 = nothing came back). Pairs
    whose A[j][j] was not scored are skipped; excluded tasks as for HFP.
    """
    A, b = _as_matrix(A), _base(base)
    pairs, skips, undefined = _history_pairs(A, b, "rebound")
    if undefined is not None:
        return undefined
    terms = []
    for k, j in pairs:
        if math.isnan(A[j, j - 1]):
            skips.missing.add(j)
        else:
            terms.append(max(0.0, A[k, j - 1] - A[j, j - 1]))
    return _mean(terms, skips, "no scored (stage k >= 2, task j < k) pair")


def collateral(A: Matrix, base: float | None = None) -> MetricValue:
    """Collateral = mean over k = 1..T and j > k (tasks not requested yet, up to J) of f[k][j]; ideal 0.

    Forgetting of what no stage asked to forget yet: damage, not unlearning. NaN without a future-task cell.
    """
    A, b = _as_matrix(A), _base(base)
    _stages(A)
    skips, terms = _Skips(), []
    ok = {j: skips.task_ok(A, j, b) for j in range(1, A.shape[1] + 1)}
    for k in range(1, A.shape[0]):
        if np.isnan(A[k]).all():
            skips.missing.add(k)
            continue
        terms += [_f(A, k, j, b) for j in range(k + 1, A.shape[1] + 1) if ok[j] and skips.scored(A, k, j)]
    return _mean(terms, skips, "no scored cell of a task after its stage (j > k)")


def over_forgetting(A: Matrix, base: float | None = None) -> MetricValue:
    """Over-forgetting = mean over the scored requested cells (k = 1..T, j <= k) of max(0, B[0] − A[k][j]).

    How far a forgotten task went *below* the base rate (answers worse than a model that never saw the
    profiles: a sign of damage, not rewarded by f). Always 0 when B[0] = 0. Excluded tasks are not skipped.
    """
    A, b = _as_matrix(A), _base(base)
    T = _stages(A)
    skips, terms = _Skips(), []
    for k in range(1, T + 1):
        if np.isnan(A[k]).all():
            skips.missing.add(k)
            continue
        terms += [max(0.0, b - A[k, j - 1]) for j in range(1, k + 1) if skips.scored(A, k, j)]
    return _mean(terms, skips, "no scored cell (k >= 1, j <= k)")


def icu_score(fe: float, hfp: float, ru_final: float) -> MetricValue:
    """The headline ICU score: the harmonic mean of FE, HFP and RU_final (each clipped to [0, 1]).

    Low for a method that forgets nothing (FE = 0) and for one that collapses (RU_final = 0): one weak part
    pulls the harmonic mean down. Without HFP (a single stage, or HFP undefined) it is the harmonic mean of FE
    and RU_final; NaN if FE or RU_final is NaN.
    """
    notes: tuple[str, ...] = ()
    parts = [fe, hfp, ru_final]
    if math.isnan(hfp):
        parts, notes = [fe, ru_final], ("HFP undefined: harmonic mean of FE and RU_final only",)
    if any(math.isnan(p) for p in parts):
        return MetricValue(math.nan, ("undefined: FE or RU_final is undefined",))
    clipped = [min(1.0, max(0.0, p)) for p in parts]
    if min(clipped) == 0.0:
        return MetricValue(0.0, notes)
    return MetricValue(len(clipped) / sum(1.0 / p for p in clipped), notes)
