"""Fluency of generated answers: ROME's weighted bi/tri-gram entropy (bits), per text and per stage."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["ngram_entropy", "fluency"]


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
