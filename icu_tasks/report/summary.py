"""One run's continual metrics as a JSON-ready dict: the ``runs`` entries of ``report.json``.

:func:`run_summary` turns a :class:`~icu_tasks.report.results.ContinualRun` into its metrics (defined in
docs/metrics.md, per forget view VQA/QA/pooled, normalised against the base rate, with bootstrap
intervals from :mod:`icu_tasks.continual.bootstrap`), its per-stage rows and its notes; NaN becomes None.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from icu_tasks.continual import bootstrap as bs
from icu_tasks.continual import retention
from icu_tasks.data.schema import VIEWS
from icu_tasks.report.results import ContinualRun

NO_BASE_NOTE = "no holdout split scored: base rate B[0] = 0 in every normalised metric"


def json_number(x: float | None) -> float | None:
    """``x`` as a JSON number: None for None or NaN (report.json allows no NaN)."""
    return None if x is None or math.isnan(x) else float(x)


def _list(x: np.ndarray) -> Any:
    return [_list(row) for row in x] if x.ndim > 1 else [json_number(float(v)) for v in x]


def _ci(x: np.ndarray) -> Any:
    """An interval array (last axis = [lo, hi]) as nested lists, None for an undefined interval."""
    if x.ndim == 1:
        return None if np.isnan(x).any() else [float(x[0]), float(x[1])]
    return [_ci(row) for row in x]


def _intervals_json(ci: bs.Intervals | None) -> dict[str, Any] | None:
    if ci is None:
        return None
    return {
        "level": bs.LEVEL,
        "n_boot": ci.n_boot,
        "seed": ci.seed,
        "metrics": {key: _ci(np.asarray(v, dtype=float)) for key, v in ci.metrics.items()},
        "forget": {view: _ci(v) for view, v in ci.forget.items()},
        "retain": _ci(ci.retain),
        "utility": _ci(ci.utility),
        "ru": _ci(ci.ru),
    }


def run_summary(
    run: ContinualRun, n_boot: int = bs.DEFAULT_RESAMPLES, seed: int = bs.DEFAULT_SEED
) -> dict[str, Any]:
    """The metrics of one run as a JSON-ready dict (NaN → None, with every metric's notes).

    ``intervals`` holds the bootstrap intervals (``n_boot`` resamples, ``seed``; None with ``n_boot = 0`` or
    when the run kept no per-item scores).
    """
    values = bs.run_metrics(run)
    worst = retention.worst_stage(run.retain, run.utility)
    fluency = run.longform.get("entropy", np.full(run.stages + 1, math.nan))
    scored_fluency = [k for k in range(run.stages + 1) if not math.isnan(fluency[k])]
    last = scored_fluency[-1] if scored_fluency else None
    base = bs.base_rates(run)
    notes = list(run.notes)
    if all(b is None for b in base.values()):
        notes.append(NO_BASE_NOTE)
    return {
        "name": run.name,
        "method": run.method,
        "path": str(run.root),
        "metric": run.metric,
        "stages": run.stages,
        "tasks": run.tasks,
        "scored_stages": run.scored,
        "missing_stages": run.missing,
        "schedule": {
            "every": run.schedule.every,
            "window": run.schedule.window,
            "description": run.schedule.describe(),
        },
        "missing_cells": {view: run.missing_cells(view) for view in VIEWS},
        "metrics": {key: json_number(v.value) for key, v in values.items()}
        | {
            "ru_final_stage": values["ru_final"].stage,
            "worst_stage": worst.stage,
            "worst_stage_swing": json_number(worst.value),
            "fluency_stage0": json_number(float(fluency[0])),
            "fluency_final": json_number(float(fluency[last])) if last is not None else None,
            "fluency_final_stage": last,
        },
        "metric_notes": {key: list(v.notes) for key, v in values.items() if v.notes and key != "icu"},
        "base_rate": {view: json_number(b) for view, b in base.items()},
        "per_stage": {
            "retain": _list(run.retain),
            **{f"retain_{view}": _list(run.retain_by_view[view]) for view in VIEWS},
            "utility": _list(run.utility),
            "ru": _list(retention.retained_utility_per_stage(run.retain, run.utility)),
            **{f"holdout_{view}": _list(run.holdout[view]) for view in VIEWS if view in run.holdout},
            **{f"longform_{row}": _list(values) for row, values in run.longform.items()},
            "answer_entropy": _list(run.answer_entropy),
            "n_samples": list(run.n_samples),
        },
        "forget": {view: _list(run.forget[view]) for view in VIEWS}
        | {bs.POOLED: _list(bs.pooled_forget(run))},
        "intervals": _intervals_json(bs.bootstrap(run, n_boot=n_boot, seed=seed)),
        "stage_methods": {str(k): m for k, m in run.stage_methods.items()},
        "sources": {str(k): files for k, files in run.sources.items()},
        "notes": notes,
    }
