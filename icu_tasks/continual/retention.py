"""The retain-side continual metrics: retained utility RU (per stage, mean, final) and its largest drop.

``R`` and ``U`` are per-stage vectors of length ``T + 1`` (retain accuracy and utility, row 0 = the vanilla
model). ``U`` may also be several utility sources, ``{name: vector}`` (the built-in utility split and external
lmms-eval tasks): each is normalised by its own stage-0 value and the utility term of RU is their mean,
RU_k = ½ (R[k]/R[0] + mean_s U_s[k]/U_s[0]). A stage that was not scored is NaN: it is skipped, never imputed, and named in the result's notes.
A stage-0 value below :data:`MIN_BASELINE` (the vanilla model hardly answers that split) leaves its ratio out
of RU, with a note, so no RU comes from a tiny denominator (as :data:`~icu_tasks.continual.metrics.MIN_MARGIN`
does for the forget side).
Every function returns a :class:`~icu_tasks.continual.metrics.MetricValue`; the forget-side metrics and the
ICU score are in :mod:`icu_tasks.continual.metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from icu_tasks.continual.metrics import MetricValue, join_ints

__all__ = [
    "MIN_BASELINE",
    "retained_utility_per_stage",
    "retained_utility",
    "retained_utility_final",
    "largest_drop",
]

#: Smallest R[0] or U[0] whose ratio enters RU.
MIN_BASELINE = 0.1


def _as_vector(x: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    vec = np.asarray(x, dtype=float)
    if vec.ndim != 1 or vec.shape[0] < 1:
        raise ValueError(f"{name} must be a 1-D vector over stages 0..T, got shape {vec.shape}")
    return vec


def _ratio(x: np.ndarray, name: str, notes: list[str]) -> np.ndarray | None:
    base = x[0]
    if math.isnan(base):
        notes.append(f"{name}[0] not scored: {name} left out of RU")
        return None
    if base < MIN_BASELINE:
        notes.append(
            f"{name}[0] = {base:.3f} < {MIN_BASELINE}: {name} left out of RU (the vanilla model hardly "
            "answers it; a ratio to it would mostly be noise)"
        )
        return None
    return x / base


#: Utility: one per-stage vector, or several named sources (``{"U": built-in, "U[task]": external, ...}``).
Utility = Sequence[float] | np.ndarray | Mapping[str, Sequence[float] | np.ndarray]


def _utility_ratio(U: Utility, stages: int, notes: list[str]) -> np.ndarray | None:
    """The utility term of RU: the mean of the usable sources' ratios to their stage-0 values (None if none)."""
    sources = dict(U) if isinstance(U, Mapping) else {"U": U}
    parts = []
    for name, values in sources.items():
        vec = _as_vector(values, name)
        if vec.shape[0] != stages:
            raise ValueError(
                f"R and {name} must cover the same stages, got {stages} and {vec.shape[0]} entries"
            )
        ratio = _ratio(vec, name, notes)
        if ratio is not None:
            parts.append(ratio)
    return np.mean(np.stack(parts), axis=0) if parts else None


def _ru_and_notes(R: np.ndarray, U: Utility) -> tuple[np.ndarray, list[str]]:
    R = _as_vector(R, "R")
    notes: list[str] = []
    parts = [p for p in (_ratio(R, "R", notes), _utility_ratio(U, R.shape[0], notes)) if p is not None]
    if not parts:
        return np.full(R.shape, math.nan), notes
    with np.errstate(invalid="ignore"):
        ru = np.mean(np.stack(parts), axis=0)  # NaN where any used part is NaN (stage not fully scored)
    return ru, notes


def retained_utility_per_stage(R: Sequence[float] | np.ndarray, U: Utility) -> np.ndarray:
    """RU_k = ½ (R[k]/R[0] + U[k]/U[0]) for k = 0..T (RU_0 = 1). NaN where stage k is not scored.

    If R[0] or U[0] is NaN or below :data:`MIN_BASELINE`, that ratio is left out and RU_k uses the other
    term alone.
    """
    return _ru_and_notes(np.asarray(R, float), U)[0]


def retained_utility(R: Sequence[float] | np.ndarray, U: Utility) -> MetricValue:
    """RU = mean over k = 1..T of RU_k (see :func:`retained_utility_per_stage`); 1 = nothing lost."""
    ru, notes = _ru_and_notes(np.asarray(R, float), U)
    if ru.shape[0] < 2:
        return MetricValue(math.nan, ("undefined: no unlearning stage (only the vanilla row)",))
    if math.isnan(ru[0]):
        return MetricValue(math.nan, ("undefined: neither R[0] nor U[0] is usable",) + tuple(notes))
    stages = ru[1:]
    missing = [k for k in range(1, ru.shape[0]) if math.isnan(ru[k])]
    if missing:
        notes.append(f"skipped stage(s) {join_ints(missing)}: not scored")
    if np.isnan(stages).all():
        return MetricValue(math.nan, ("undefined: no scored unlearning stage",) + tuple(notes))
    return MetricValue(float(np.nanmean(stages)), tuple(notes))


def largest_drop(R: Sequence[float] | np.ndarray, U: Utility) -> MetricValue:
    """The largest fall of RU between consecutive *scored* stages: max over scored p < k, with no scored stage
    between them, of max(0, RU_p − RU_k); ``stage`` = the k where it landed (ties → the earliest).

    0 = RU never fell; the value is in RU units and does not shrink as T grows. Under an evaluation schedule
    that skips stages, the fall between two scored stages spans the stages between them (the note names the
    pair). NaN with the reason when fewer than two stages are scored.
    """
    ru, notes = _ru_and_notes(np.asarray(R, float), U)
    scored = [k for k in range(ru.shape[0]) if not math.isnan(ru[k])]
    if len(scored) < 2:
        return MetricValue(math.nan, ("undefined: fewer than two scored stages",) + tuple(notes))
    best, where = 0.0, None
    for p, k in zip(scored, scored[1:], strict=False):
        fall = float(ru[p] - ru[k])
        if fall > best:
            best, where = fall, (p, k)
    if where is None:
        return MetricValue(0.0, tuple(notes))
    if where[0] != where[1] - 1:
        notes.append(f"largest fall from stage {where[0]} to stage {where[1]} (no scored stage between)")
    return MetricValue(best, tuple(notes), stage=where[1])


def retained_utility_final(R: Sequence[float] | np.ndarray, U: Utility) -> MetricValue:
    """RU_final = RU_T, what is left after the last stage; ``stage`` = T.

    In a partial run (stage T not scored) the last scored stage stands in and the note says so.
    """
    ru, notes = _ru_and_notes(np.asarray(R, float), U)
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
