"""lmms-eval sample records → the per-item tables of :class:`~icu_tasks.continual.items.RunItems`.

Every ICU payload carries the item's ``profile_id`` (:mod:`icu_tasks.harness.hooks`), which makes the profile
the resampling unit of the bootstrap. Per record kind:

* accuracy (the generate / ``_mc`` tasks): the chosen metric's value (:func:`~icu_tasks.report.samples.score`);
* likelihood (``icu_ll_*``, key ``answer_prob``): ``prob`` and the raw truth ratio ``ratio``;
* membership (``icu_mia_*``, key ``mia_auc_loss``): ``loss``, ``zlib`` (``zlib_loss``) and ``member``;
* long-form (``icu_longform_*``, key ``longform_entropy``): ``entropy``, ``repetition``, ``leakage``.

A payload without a profile id (written by hand, or by a foreign task) is a unit of its own; the count is
noted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from icu_tasks.continual.items import ItemTable, RunItems, UnitIndex
from icu_tasks.report.samples import score

LL_KEY, MIA_KEY, LONGFORM_KEY = "answer_prob", "mia_auc_loss", "longform_entropy"
#: Value columns of each table, and where a payload keeps them.
COLUMNS: dict[str, dict[str, str]] = {
    "accuracy": {"score": "score"},
    "likelihood": {"prob": "answer_prob", "ratio": "truth_ratio"},
    "mia": {"loss": "loss", "zlib": "zlib_loss", "member": "member"},
    "longform": {
        "entropy": "longform_entropy",
        "repetition": "longform_repetition",
        "leakage": "longform_leakage",
    },
}


class ItemRows:
    """Collects the rows of every table over the stages of a run, with one :class:`UnitIndex`."""

    def __init__(self) -> None:
        self.index = UnitIndex()
        self.rows: dict[str, list[dict[str, Any]]] = {kind: [] for kind in COLUMNS}

    def _add(self, kind: str, k: int, meta: Mapping[str, Any], values: dict[str, float]) -> None:
        split, task = str(meta["split"]), int(meta.get("forget_task") or 0)
        unit = self.index.add(split, task, meta.get("profile_id"))
        view = str(meta.get("view") or "qa")
        self.rows[kind].append(
            {"stage": k, "split": split, "view": view, "task": task, "unit": unit, **values}
        )

    def add_stage(self, k: int, records: list[dict], metric: str) -> int:
        """Add one stage's records; returns how many carried the accuracy ``metric``."""
        n = 0
        for rec in records:
            scored = score(rec, metric, with_meta=True)
            if scored is not None:
                value, meta = scored
                self._add("accuracy", k, meta, {"score": value})
                n += 1
            for kind, key in (("likelihood", LL_KEY), ("mia", MIA_KEY), ("longform", LONGFORM_KEY)):
                payload = rec.get(key)
                if isinstance(payload, dict) and "split" in payload:
                    values = _values(payload, COLUMNS[kind])
                    if values is not None:
                        self._add(kind, k, payload, values)
        return n

    def freeze(self, stages: int) -> tuple[RunItems, list[str]]:
        """The :class:`RunItems` (J = the highest forget task seen, at least T) and notes."""
        tasks = max(
            [stages, *(r["task"] for rows in self.rows.values() for r in rows if r["split"] == "forget")]
        )
        tables = {kind: ItemTable.from_rows(self.rows[kind], list(COLUMNS[kind])) for kind in COLUMNS}
        notes = []
        if self.index.unlabelled:
            notes.append(
                f"{self.index.unlabelled} scored item(s) without a profile_id: each resampled as its own unit"
            )
        return RunItems(stages=stages, tasks=tasks, units=self.index.freeze(), **tables), notes


def _values(payload: Mapping[str, Any], columns: dict[str, str]) -> dict[str, float] | None:
    try:
        values = {name: float(payload[key]) for name, key in columns.items()}
    except (KeyError, TypeError, ValueError):
        return None
    return None if any(math.isnan(v) for v in values.values()) else values
