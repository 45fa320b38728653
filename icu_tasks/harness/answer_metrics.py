"""Per-sample answer metrics: pure functions, no model, no lmms-eval.

Every metric compares a model's ``prediction`` with the ground-truth ``target`` after the same
normalisation (:func:`normalize_answer`):

1. Unicode NFKC (full-width digits, ligatures and compatibility forms become their plain forms),
2. case folding (``str.casefold``: ``"Straße"`` → ``"strasse"``),
3. deletion of every punctuation and symbol character (Unicode categories ``P*`` and ``S*``; SQuAD-style
   deletion, so ``"$52,000"`` == ``"52000"`` and ``"MED-0042"`` == ``"med0042"``),
4. whitespace collapsed to single spaces and stripped.

Conventions for degenerate inputs (tested): an empty or ``None`` prediction scores 0 against a non-empty
target; a target that normalises to the empty string is matched only by a prediction that does too
(``contains`` and ROUGE-L recall then fall back to exact match, since "contains nothing" and "recall of
nothing" are undefined).
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable, Sequence

__all__ = [
    "GENERATE_METRICS",
    "normalize_answer",
    "exact_match",
    "contains_match",
    "rouge_l_recall",
    "mc_accuracy",
    "mc_prediction",
]


def normalize_answer(text: str | None) -> str:
    """Normalise an answer for comparison: NFKC, casefold, drop punctuation/symbols, collapse spaces."""
    if text is None:
        return ""
    text = unicodedata.normalize("NFKC", str(text)).casefold()
    kept = (ch for ch in text if unicodedata.category(ch)[0] not in "PS")
    return " ".join("".join(kept).split())


def exact_match(prediction: str | None, target: str | None) -> float:
    """1.0 if prediction and target are equal after :func:`normalize_answer`, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(target))


def contains_match(prediction: str | None, target: str | None) -> float:
    """1.0 if the normalised target occurs in the normalised prediction as whole tokens, else 0.0.

    Token boundaries matter: target ``"12"`` is not found in ``"312"`` but is in ``"room 12 left"``.
    (MLLMU-Bench's cloze check is a plain substring test; whole tokens avoid crediting short numbers or
    name fragments that happen to sit inside longer ones.) An empty normalised target falls back to
    :func:`exact_match`.
    """
    norm_target = normalize_answer(target)
    norm_prediction = normalize_answer(prediction)
    if not norm_target:
        return float(norm_prediction == norm_target)
    return float(f" {norm_target} " in f" {norm_prediction} ")


class _NormalizedTokenizer:
    """``rouge_score`` tokenizer over :func:`normalize_answer`, with its stemming rule.

    rouge_score's default tokenizer keeps only ``[a-z0-9]`` and so silently drops every non-ASCII letter
    (``"Müller"`` → ``["m", "ller"]``). This one splits the normalised text on spaces and, like the
    default tokenizer with ``use_stemmer=True``, Porter-stems tokens longer than 3 characters.
    """

    def __init__(self) -> None:
        from nltk.stem import porter

        self._stemmer = porter.PorterStemmer()

    def tokenize(self, text: str) -> list[str]:
        return [self._stemmer.stem(tok) if len(tok) > 3 else tok for tok in normalize_answer(text).split()]


@functools.lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], tokenizer=_NormalizedTokenizer())


def rouge_l_recall(prediction: str | None, target: str | None) -> float:
    """ROUGE-L recall of the target by the prediction (``rouge_score``, Porter stemmer on).

    Recall = length of the longest common token subsequence / number of target tokens, so extra words in
    the prediction do not lower it. An empty normalised target falls back to :func:`exact_match`.
    """
    if not normalize_answer(target):
        return exact_match(prediction, target)
    score = _rouge_scorer().score(str(target), "" if prediction is None else str(prediction))
    return float(score["rougeL"].recall)


def mc_prediction(loglikelihoods: Sequence[float]) -> int:
    """Index of the most likely choice (first one on ties); loglikelihoods are log-probs, higher = better."""
    if len(loglikelihoods) == 0:
        raise ValueError("mc_prediction needs at least one choice loglikelihood")
    best = 0
    for i, value in enumerate(loglikelihoods):
        if float(value) > float(loglikelihoods[best]):
            best = i
    return best


def mc_accuracy(loglikelihoods: Sequence[float], gold_index: int) -> float:
    """1.0 if the highest-loglikelihood choice is the gold one, else 0.0.

    ``loglikelihoods[i]`` is the summed log-probability of choice ``i`` given the prompt (lm-eval's
    convention; higher is better). Ties go to the first choice, so a model that scores every choice alike
    is right only when the gold answer happens to be listed first.
    """
    if not 0 <= gold_index < len(loglikelihoods):
        raise ValueError(f"gold index {gold_index} is outside the {len(loglikelihoods)} choices")
    return float(mc_prediction(loglikelihoods) == gold_index)


#: The per-sample metrics of the free-answer tasks, ``name -> metric(prediction, target)``, in the order the task
#: template lists them. Each is computed for every sample, averaged by lmms-eval (``aggregate_<name>`` in
#: :mod:`icu_tasks.harness.hooks`), listed in the generated ``_icu_generate_yaml`` and offered to
#: ``icu-bench report --metric``: a new metric is one function and one line here (then regenerate the YAMLs).
GENERATE_METRICS: dict[str, Callable[[str | None, str | None], float]] = {
    "exact_match": exact_match,
    "contains": contains_match,
    "rougeL_recall": rouge_l_recall,
}
