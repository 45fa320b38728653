"""Hand-written checks of what lmms-eval writes beside the scores: standard errors and per-sample doc hashes.

The formulas are written out here from their definitions, not taken from lmms-eval or the hooks:

* CLT standard error of a mean over n docs: ``sqrt(sum((x - mean)^2) / (n - 1)) / sqrt(n)``;
* clustered standard error (Miller 2024, "Adding Error Bars to Evals", eq. 4), docs of one profile as one
  cluster: ``sqrt(SE_CLT^2 + (sum_c (sum_{i in c} d_i)^2 - sum_i d_i^2) / n^2)`` with ``d = x - mean``;
* ``doc_hash``: SHA-256 of the doc as lmms-eval serialises it, ``json.dumps(doc, indent=2, ensure_ascii=False)``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

import pytest


def clt_stderr(values: Sequence[float]) -> float:
    n = len(values)
    mean = sum(values) / n
    return math.sqrt(sum((x - mean) ** 2 for x in values) / (n - 1)) / math.sqrt(n)


def clustered_stderr(values: Sequence[float], clusters: Sequence[str]) -> float:
    n = len(values)
    mean = sum(values) / n
    sums: dict[str, float] = defaultdict(float)
    for x, c in zip(values, clusters, strict=True):
        sums[c] += x - mean
    cross = sum(s * s for s in sums.values()) - sum((x - mean) ** 2 for x in values)
    return math.sqrt(clt_stderr(values) ** 2 + cross / n**2)


def doc_hash(doc: Mapping) -> str:
    return hashlib.sha256(json.dumps(dict(doc), indent=2, ensure_ascii=False).encode("utf-8")).hexdigest()


def check_stderrs(
    task_results: Mapping, metric: str, values: Sequence[float], profiles: Sequence[str]
) -> float:
    """``task_results`` (one task of a results JSON) carries the hand CLT and clustered standard errors of the
    per-doc ``values`` (clustered: N/A for docs of a single profile, lmms-eval's rule); the bootstrap
    ``_stderr`` stays N/A (lmms-eval bootstraps only its own aggregations). Returns the CLT value."""
    clt = clt_stderr(values)
    assert task_results[f"{metric}_stderr_clt,none"] == pytest.approx(clt, abs=1e-12), metric
    clustered = task_results[f"{metric}_stderr_clustered,none"]
    if len(set(profiles)) > 1:
        assert clustered == pytest.approx(clustered_stderr(values, profiles), abs=1e-12), metric
    else:
        assert clustered == "N/A", metric
    assert task_results[f"{metric}_stderr,none"] == "N/A", metric
    assert (clt > 0) == (len(set(values)) > 1), (metric, values)  # zero only when every doc scored the same
    return clt


def check_doc_hashes(records: Sequence[Mapping], docs: Sequence[Mapping]) -> None:
    """Every logged sample's ``doc_hash`` is the hash of its own doc (``docs[doc_id]``), so all differ."""
    assert [r["doc_hash"] for r in records] == [doc_hash(docs[r["doc_id"]]) for r in records]
    assert len({r["doc_hash"] for r in records}) == len(records)
