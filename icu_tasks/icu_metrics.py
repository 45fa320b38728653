"""The ICU-Bench continual metrics (DESIGN §7): one pure-numpy function per metric.

Conventions for every function here:

* ``A`` is a forget-accuracy matrix of shape ``(T + 1, J)``: row ``k`` is the model after stage ``k``
  (row 0 = the vanilla model), column ``i`` is forget task ``i + 1``. Stage ``k`` forgets task ``k``, so the
  paper's ``A[k][j]`` is ``A[k, j - 1]`` here and the diagonal of interest is ``A[k, k - 1]``. ``J >= T``:
  columns of tasks no stage has reached yet (future tasks) are kept but only tasks ``1..T`` enter a metric.
* ``R`` and ``U`` are per-stage vectors of length ``T + 1`` (retain accuracy and utility, row 0 = vanilla).
* A stage that was not scored (a partial run, a crashed evaluation) is a row of NaN. NaN entries are skipped
  and named in the result's ``notes``; a metric with nothing left to average is NaN with the reason.
* A task the vanilla model did not know (``A[0][j] <= 0``) has no forgetting to measure: it is excluded from
  FE, HFP and rebound (the ratio ``A[k][j] / A[0][j]`` is undefined) and the exclusion is listed in ``notes``.
  Likewise a missing (NaN) ``A[0][j]``.

Every function returns a :class:`MetricValue` (``value`` + ``notes``; ``stage`` for the worst stage).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MetricValue",
    "forgetting_effectiveness",
    "historical_forgetting_preservation",
    "rebound",
    "retained_utility_per_stage",
    "retained_utility",
    "stability",
    "worst_stage",
    "ngram_entropy",
    "fluency",
]


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

    def task_ok(self, A: np.ndarray, j: int) -> bool:
        a0 = A[0, j - 1]
        if math.isnan(a0):
            self.no_vanilla.add(j)
            return False
        if a0 <= 0.0:
            self.unknown.add(j)
            return False
        return True

    def notes(self) -> tuple[str, ...]:
        out = []
        if self.unknown:
            out.append(
                f"excluded task(s) {_fmt(sorted(self.unknown))}: the vanilla model did not know them (A[0][j] = 0)"
            )
        if self.no_vanilla:
            out.append(f"excluded task(s) {_fmt(sorted(self.no_vanilla))}: not scored at stage 0")
        if self.missing:
            out.append(f"skipped stage(s) {_fmt(sorted(self.missing))}: not scored")
        return tuple(out)


def _stages(A: np.ndarray) -> int:
    """T, the number of unlearning stages, checked against the number of task columns."""
    T = A.shape[0] - 1
    if A.shape[1] < T:
        raise ValueError(f"A has {T} stages but only {A.shape[1]} task columns; stage k forgets task k")
    return T


def forgetting_effectiveness(A: Sequence[Sequence[float]] | np.ndarray) -> MetricValue:
    """FE = mean over k = 1..T of clip(1 − A[k][k] / A[0][k], 0, 1).

    Each term is clipped to [0, 1] (a stage that made its task *more* known counts as no forgetting, not as
    negative forgetting), so FE is in [0, 1]; 1 = every task forgotten completely right after its stage.
    """
    A = _as_matrix(A)
    T = _stages(A)
    if T < 1:
        return MetricValue(math.nan, ("undefined: no unlearning stage (only the vanilla row)",))
    skips, terms = _Skips(), []
    for k in range(1, T + 1):
        if not skips.task_ok(A, k):
            continue
        akk = A[k, k - 1]
        if math.isnan(akk):
            skips.missing.add(k)
            continue
        terms.append(min(1.0, max(0.0, 1.0 - akk / A[0, k - 1])))
    if not terms:
        return MetricValue(
            math.nan, ("undefined: no stage with a scored task the vanilla model knew",) + skips.notes()
        )
    return MetricValue(float(np.mean(terms)), skips.notes())


def _history_pairs(A: np.ndarray, name: str) -> tuple[list[tuple[int, int]], _Skips, MetricValue | None]:
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
            if skips.task_ok(A, j) and not math.isnan(A[k, j - 1]):
                pairs.append((k, j))
    return pairs, skips, None


def historical_forgetting_preservation(A: Sequence[Sequence[float]] | np.ndarray) -> MetricValue:
    """HFP = mean over k = 2..T and j = 1..k−1 of (1 − A[k][j] / A[0][j]).

    How well earlier forget tasks stay forgotten as later stages run. Not clipped (DESIGN §7 clips only FE):
    a task that comes back *above* its vanilla accuracy gives a negative term. NaN with a reason for T < 2.
    """
    A = _as_matrix(A)
    pairs, skips, undefined = _history_pairs(A, "HFP")
    if undefined is not None:
        return undefined
    if not pairs:
        return MetricValue(
            math.nan, ("undefined: no scored (stage k >= 2, task j < k) pair",) + skips.notes()
        )
    terms = [1.0 - A[k, j - 1] / A[0, j - 1] for k, j in pairs]
    return MetricValue(float(np.mean(terms)), skips.notes())


def rebound(A: Sequence[Sequence[float]] | np.ndarray) -> MetricValue:
    """Rebound = mean over k = 2..T and j = 1..k−1 of max(0, A[k][j] − A[j][j]).

    The forgetting analogue of backward transfer (BWT with the sign flipped, only increases counted): how much
    accuracy an earlier task regained after the stage that forgot it. 0 = nothing came back. Pairs whose
    A[j][j] was not scored are skipped; tasks unknown to the vanilla model are excluded as for HFP.
    """
    A = _as_matrix(A)
    pairs, skips, undefined = _history_pairs(A, "rebound")
    if undefined is not None:
        return undefined
    usable = []
    for k, j in pairs:
        if math.isnan(A[j, j - 1]):
            skips.missing.add(j)
        else:
            usable.append((k, j))
    if not usable:
        return MetricValue(
            math.nan, ("undefined: no scored (stage k >= 2, task j < k) pair",) + skips.notes()
        )
    terms = [max(0.0, A[k, j - 1] - A[j, j - 1]) for k, j in usable]
    return MetricValue(float(np.mean(terms)), skips.notes())


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


_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def ngram_entropy(text: str, ns: Sequence[int] = (2, 3), weights: Sequence[float] = (2 / 3, 4 / 3)) -> float:
    """ROME's n-gram entropy of one text: the arithmetic mean over n of ``weight_n · H_n`` (bits).

    ``H_n`` is the Shannon entropy (log base 2) of the frequency distribution of the text's n-grams. Defaults
    as in ROME (bi- and tri-grams, weights 2/3 and 4/3). ROME tokenises with ``nltk.word_tokenize``; here a
    word/punctuation regex does the same job for our short answers without the nltk dependency. A text with
    fewer than n tokens has no n-grams and contributes H_n = 0 (as in ROME, where the empty sum is 0).
    """
    if len(ns) != len(weights):
        raise ValueError("ns and weights must have the same length")
    tokens = _TOKEN.findall(text.lower())
    values = []
    for n, w in zip(ns, weights, strict=True):
        grams = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        total = sum(grams.values())
        h = 0.0
        if total:
            p = np.array(list(grams.values()), dtype=float) / total
            h = float(-(p * np.log2(p)).sum())
        values.append(w * h)
    return float(np.mean(values))


def fluency(texts: Iterable[str]) -> float:
    """Fluency of one stage: the mean :func:`ngram_entropy` of its generated answers; NaN for no answers.

    Degenerate output (the same token repeated, a common failure after gradient ascent) scores near 0;
    varied, well-formed answers score higher. Compare stages of one run, not absolute values across data sets.
    """
    values = [ngram_entropy(t) for t in texts if t is not None]
    return float(np.mean(values)) if values else math.nan
