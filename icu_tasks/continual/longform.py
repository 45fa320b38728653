"""Per-stage long-form rows from lmms-eval sample records of the ``icu_longform`` tasks.

A long-form record carries, under each of its metric keys (``longform_entropy``, ...), the payload of
:func:`icu_tasks.harness.longform.process_results`; :func:`longform_means` averages a stage's payloads into the
rows of :data:`LONGFORM_ROWS` (``ContinualRun.longform`` in :mod:`icu_tasks.report.results`).
"""

from __future__ import annotations

import math

import numpy as np

#: Rows of ``ContinualRun.longform``: (row name, payload score, split or None for forget and retain pooled).
LONGFORM_ROWS: tuple[tuple[str, str, str | None], ...] = (
    ("entropy", "longform_entropy", None),
    ("repetition", "longform_repetition", None),
    ("leakage_forget", "longform_leakage", "forget"),
    ("leakage_retain", "longform_leakage", "retain_eval"),
)


def _longform_payload(rec: dict) -> dict | None:
    payload = rec.get("longform_entropy")
    return payload if isinstance(payload, dict) and "longform_leakage" in payload else None


def longform_means(records: list[dict]) -> dict[str, float]:
    """The :data:`LONGFORM_ROWS` means of one stage's records (NaN where no long-form sample applies)."""
    payloads = [p for rec in records if (p := _longform_payload(rec)) is not None]
    out = {}
    for row, key, split in LONGFORM_ROWS:
        values = [
            float(p[key])
            for p in payloads
            if (split is None and p.get("split") in ("forget", "retain_eval")) or p.get("split") == split
        ]
        out[row] = float(np.mean(values)) if values else math.nan
    return out


__all__ = ["LONGFORM_ROWS", "longform_means"]
