"""The ICU-Bench continual metrics (README "Continual runs", normalised against a base rate): pure-numpy functions.

Conventions for every function here:

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
* ``R`` and ``U`` are per-stage vectors of length ``T + 1`` (retain accuracy and utility, row 0 = vanilla).
* A stage that was not scored (a partial run, a crashed evaluation, the evaluation schedule) is a row of NaN;
  a forget task the schedule did not score at a stage is a NaN cell. NaN entries are skipped, never imputed,
  and named (stages) or counted (cells) in ``notes``; a metric with nothing left to average is NaN with the
  reason.

Every function returns a :class:`MetricValue` (``value`` + ``notes``; ``stage`` for the worst stage).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from icu_tasks.continual.fluency import fluency, ngram_entropy

__all__ = [
    "MIN_MARGIN",
    "MetricValue",
    "normalised_forgetting",
    "forgetting_effectiveness",
    "historical_forgetting_preservation",
    "rebound",
    "collateral",
    "over_forgetting",
    "retained_utility_per_stage",
    "retained_utility",
    "retained_utility_final",
    "stability",
    "worst_stage",
    "icu_score",
    "ngram_entropy",
    "fluency",
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


def _as_vector(x: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    vec = np.asarray(x, dtype=float)
    if vec.ndim != 1 or vec.shape[0] < 1:
        raise ValueError(f"{name} must be a 1-D vector over stages 0..T, got shape {vec.shape}")
    return vec


def _fmt(items: Iterable[int]) -> str:
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
                f"excluded task(s) {_fmt(sorted(self.unknown))}: the vanilla model did not know them above "
                f"the base rate (A[0][j] − B[0] < {MIN_MARGIN})"
            )
        if self.no_vanilla:
            out.append(f"excluded task(s) {_fmt(sorted(self.no_vanilla))}: not scored at stage 0")
        if self.missing:
            out.append(f"skipped stage(s) {_fmt(sorted(self.missing))}: not scored")
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


def _ratio(x: np.ndarray, name: str, notes: list[str]) -> np.ndarray | None:
    base = x[0]
    if math.isnan(base):
        notes.append(f"{name}[0] not scored: {name} left out of RU")
        return None
    if base <= 0.0:
        notes.append(f"{name}[0] = 0: {name} left out of RU (ratio undefined)")
        return None
    return x / base


def _ru_and_notes(R: np.ndarray, U: np.ndarray) -> tuple[np.ndarray, list[str]]:
    R, U = _as_vector(R, "R"), _as_vector(U, "U")
    if R.shape != U.shape:
        raise ValueError(f"R and U must cover the same stages, got {R.shape[0]} and {U.shape[0]} entries")
    notes: list[str] = []
    parts = [p for p in (_ratio(R, "R", notes), _ratio(U, "U", notes)) if p is not None]
    if not parts:
        return np.full(R.shape, math.nan), notes
    with np.errstate(invalid="ignore"):
        ru = np.mean(np.stack(parts), axis=0)  # NaN where any used part is NaN (stage not fully scored)
    return ru, notes


def retained_utility_per_stage(
    R: Sequence[float] | np.ndarray, U: Sequence[float] | np.ndarray
) -> np.ndarray:
    """RU_k = ½ (R[k]/R[0] + U[k]/U[0]) for k = 0..T (RU_0 = 1). NaN where stage k is not scored.

    If R[0] or U[0] is 0 or NaN, that ratio is undefined and RU_k uses the other term alone.
    """
    return _ru_and_notes(np.asarray(R, float), np.asarray(U, float))[0]


def retained_utility(R: Sequence[float] | np.ndarray, U: Sequence[float] | np.ndarray) -> MetricValue:
    """RU = mean over k = 1..T of RU_k (see :func:`retained_utility_per_stage`); 1 = nothing lost."""
    ru, notes = _ru_and_notes(np.asarray(R, float), np.asarray(U, float))
    if ru.shape[0] < 2:
        return MetricValue(math.nan, ("undefined: no unlearning stage (only the vanilla row)",))
    if math.isnan(ru[0]):
        return MetricValue(math.nan, ("undefined: neither R[0] nor U[0] is usable",) + tuple(notes))
    stages = ru[1:]
    missing = [k for k in range(1, ru.shape[0]) if math.isnan(ru[k])]
    if missing:
        notes.append(f"skipped stage(s) {_fmt(missing)}: not scored")
    if np.isnan(stages).all():
        return MetricValue(math.nan, ("undefined: no scored unlearning stage",) + tuple(notes))
    return MetricValue(float(np.nanmean(stages)), tuple(notes))


def _swings(R: np.ndarray, U: np.ndarray) -> tuple[dict[int, float], list[str]]:
    """|RU_k − RU_{k−1}| for every k = 1..T where both stages are scored."""
    ru, notes = _ru_and_notes(np.asarray(R, float), np.asarray(U, float))
    if math.isnan(ru[0]):
        return {}, ["neither R[0] nor U[0] is usable", *notes]
    swings, skipped = {}, []
    for k in range(1, ru.shape[0]):
        if math.isnan(ru[k]) or math.isnan(ru[k - 1]):
            skipped.append(k)
        else:
            swings[k] = abs(float(ru[k] - ru[k - 1]))
    if skipped:
        notes.append(
            f"skipped the change into stage(s) {_fmt(skipped)}: that stage or the one before not scored"
        )
    return swings, notes


def stability(R: Sequence[float] | np.ndarray, U: Sequence[float] | np.ndarray) -> MetricValue:
    """Stability = 1 − mean over k = 1..T of |RU_k − RU_{k−1}| (RU_0 = 1).

    Only changes between two scored consecutive stages count. Not clipped: 1 = RU never moved; a run whose RU
    swings by more than 1 per stage on average goes below 0. ``stage`` is the worst stage (largest swing).
    """
    swings, notes = _swings(np.asarray(R, float), np.asarray(U, float))
    if not swings:
        return MetricValue(math.nan, ("undefined: no pair of scored consecutive stages",) + tuple(notes))
    worst = max(swings, key=lambda k: (swings[k], -k))
    return MetricValue(1.0 - float(np.mean(list(swings.values()))), tuple(notes), stage=worst)


def worst_stage(R: Sequence[float] | np.ndarray, U: Sequence[float] | np.ndarray) -> MetricValue:
    """The stage k with the largest |RU_k − RU_{k−1}| (``stage``) and that swing (``value``); ties → earliest."""
    swings, notes = _swings(np.asarray(R, float), np.asarray(U, float))
    if not swings:
        return MetricValue(math.nan, ("undefined: no pair of scored consecutive stages",) + tuple(notes))
    worst = max(swings, key=lambda k: (swings[k], -k))
    return MetricValue(swings[worst], tuple(notes), stage=worst)


def retained_utility_final(R: Sequence[float] | np.ndarray, U: Sequence[float] | np.ndarray) -> MetricValue:
    """RU_final = RU_T, what is left after the last stage; ``stage`` = T.

    In a partial run (stage T not scored) the last scored stage stands in and the note says so.
    """
    ru, notes = _ru_and_notes(np.asarray(R, float), np.asarray(U, float))
    T = ru.shape[0] - 1
    if T < 1:
        return MetricValue(math.nan, ("undefined: no unlearning stage (only the vanilla row)",))
    if math.isnan(ru[0]):
        return MetricValue(math.nan, ("undefined: neither R[0] nor U[0] is usable",) + tuple(notes))
    scored = [k for k in range(1, T + 1) if not math.isnan(ru[k])]
    if not scored:
        return MetricValue(math.nan, ("undefined: no scored unlearning stage",) + tuple(notes))
    last = scored[-1]
    if last != T:
        notes.append(f"stage {T} not scored: RU_final is RU_{last}")
    return MetricValue(float(ru[last]), tuple(notes), stage=last)


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
