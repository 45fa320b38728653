"""The retain-side continual metrics: retained utility RU (per stage, mean, final) and stability.

``R`` and ``U`` are per-stage vectors of length ``T + 1`` (retain accuracy and utility, row 0 = the vanilla
model). A stage that was not scored is NaN: it is skipped, never imputed, and named in the result's notes.
Every function returns a :class:`~icu_tasks.continual.metrics.MetricValue`; the forget-side metrics and the
ICU score are in :mod:`icu_tasks.continual.metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from icu_tasks.continual.metrics import MetricValue, join_ints

__all__ = [
    "retained_utility_per_stage",
    "retained_utility",
    "retained_utility_final",
    "stability",
    "worst_stage",
]


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
        notes.append(f"skipped stage(s) {join_ints(missing)}: not scored")
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
            f"skipped the change into stage(s) {join_ints(skipped)}: that stage or the one before not scored"
        )
    return swings, notes


def _worst_swing(R: np.ndarray, U: np.ndarray) -> tuple[dict[int, float], MetricValue]:
    """The swings and the worst one (ties → the earliest stage); NaN with the reason when there is none."""
    swings, notes = _swings(np.asarray(R, float), np.asarray(U, float))
    if not swings:
        return swings, MetricValue(
            math.nan, ("undefined: no pair of scored consecutive stages",) + tuple(notes)
        )
    worst = max(swings, key=lambda k: (swings[k], -k))
    return swings, MetricValue(swings[worst], tuple(notes), stage=worst)


def stability(R: Sequence[float] | np.ndarray, U: Sequence[float] | np.ndarray) -> MetricValue:
    """Stability = 1 − mean over k = 1..T of |RU_k − RU_{k−1}| (RU_0 = 1).

    Only changes between two scored consecutive stages count. Not clipped: 1 = RU never moved; a run whose RU
    swings by more than 1 per stage on average goes below 0. ``stage`` is the worst stage (largest swing).
    """
    swings, worst = _worst_swing(R, U)
    if not swings:
        return worst
    return MetricValue(1.0 - float(np.mean(list(swings.values()))), worst.notes, stage=worst.stage)


def worst_stage(R: Sequence[float] | np.ndarray, U: Sequence[float] | np.ndarray) -> MetricValue:
    """The stage k with the largest |RU_k − RU_{k−1}| (``stage``) and that swing (``value``); ties → earliest."""
    return _worst_swing(R, U)[1]


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
