"""Fluency of generated text: ROME's weighted bi/tri-gram entropy (bits) and a 3-gram repetition rate.

Both are meaningful on long generations only (the ``icu_longform`` tasks: one or two sentences per profile).
On a 1-6 token short answer the entropy measures nothing but its length, which is why the short-answer
value is reported as ``answer_entropy``, not as fluency (:mod:`icu_tasks.report.results`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["ngram_entropy", "fluency", "repetition_rate", "tokens"]


_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def tokens(text: str) -> list[str]:
    """The lower-cased word / punctuation tokens the fluency metrics count (``\\w+`` or one other
    non-space character)."""
    return _TOKEN.findall(text.lower())


def repetition_rate(text: str, n: int = 3) -> float:
    """Fraction of the text's n-grams (default 3-grams of :func:`tokens`) that repeat an earlier one.

    ``1 - distinct / total``: 0 when every n-gram is new, close to 1 for a degenerate loop ("the the the
    the" has the 3-grams (the the the) twice: 1 - 1/2 = 0.5). A text with fewer than ``n`` tokens has no
    n-grams and scores 0 (nothing repeated; an empty generation is caught by entropy and leakage instead).
    This is Welleck et al.'s rep-n on word tokens, so a loop without spaces ("196651966519665...") is one
    token and scores 0 here; its entropy (0 bits) is what flags it.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    toks = tokens(text)
    grams = [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def ngram_entropy(text: str, ns: Sequence[int] = (2, 3), weights: Sequence[float] = (2 / 3, 4 / 3)) -> float:
    """ROME's n-gram entropy of one text: the arithmetic mean over n of ``weight_n · H_n`` (bits).

    ``H_n`` is the Shannon entropy (log base 2) of the frequency distribution of the text's n-grams. Defaults
    as in ROME (bi- and tri-grams, weights 2/3 and 4/3). ROME tokenises with ``nltk.word_tokenize``; here a
    word/punctuation regex does the same job for our short answers without the nltk dependency. A text with
    fewer than n tokens has no n-grams and contributes H_n = 0 (as in ROME, where the empty sum is 0).
    """
    if len(ns) != len(weights):
        raise ValueError("ns and weights must have the same length")
    toks = tokens(text)
    values = []
    for n, w in zip(ns, weights, strict=True):
        grams = Counter(tuple(toks[i : i + n]) for i in range(len(toks) - n + 1))
        total = sum(grams.values())
        h = 0.0
        if total:
            p = np.array(list(grams.values()), dtype=float) / total
            h = float(-(p * np.log2(p)).sum())
        values.append(w * h)
    return float(np.mean(values))


def fluency(texts: Iterable[str]) -> float:
    """The mean :func:`ngram_entropy` of a stage's generated texts; NaN for no texts.

    Degenerate output (the same token repeated, a common failure after gradient ascent) scores near 0;
    varied, well-formed answers score higher. Compare stages of one run, not absolute values across data sets.
    """
    values = [ngram_entropy(t) for t in texts if t is not None]
    return float(np.mean(values)) if values else math.nan
