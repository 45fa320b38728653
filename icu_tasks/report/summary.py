"""One run's continual numbers as a JSON-ready dict: the ``runs`` entries of ``report.json``.

:func:`run_summary` turns a :class:`~icu_tasks.report.results.ContinualRun` into every number of the registry
(:mod:`icu_tasks.continual.registry`: run-level ``metrics``, per-stage ``per_stage`` series, the forget
matrices), their paired profile-level bootstrap intervals (:mod:`icu_tasks.continual.bootstrap`), which
headline formula the run got and why, and its notes; NaN becomes None.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from icu_tasks.continual import bootstrap as bs
from icu_tasks.continual import metrics as im
from icu_tasks.continual.registry import METRICS, SERIES
from icu_tasks.continual.series import EXTERNAL_UTILITY, GROUPS, POOLED
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
        "method": "percentile; profiles resampled within strata, one draw shared by every stage and cell",
        "strata": list(ci.strata),
        "extended_to_point": list(ci.extended),
        "metrics": {key: _ci(np.asarray(v, dtype=float)) for key, v in ci.metrics.items()},
        "series": {key: _ci(v) for key, v in ci.series.items()},
        "forget": {group: _ci(v) for group, v in ci.forget.items()},
    }


def headline(values: dict[str, im.MetricValue], mia_scored: bool) -> dict[str, str]:
    """Which harmonic mean the run's ICU score is, and why (``formula``, ``why``)."""
    hfp = values[f"hfp_{POOLED}"].value
    privacy = values[f"privacy_{POOLED}"].value if mia_scored else math.nan
    why = []
    why.append(
        "HFP undefined (a single stage, or no scored earlier task): FE stands in for it"
        if math.isnan(hfp)
        else "HFP defined"
    )
    if not mia_scored:
        why.append("privacy left out: no membership-inference (icu_mia) samples in this run")
    elif math.isnan(privacy):
        why.append("privacy left out: the membership-inference samples gave no AUC at a stage k >= 1")
    else:
        why.append(
            f"privacy from the membership-inference samples of stage {values[f'privacy_{POOLED}'].stage}"
        )
    return {"formula": im.icu_formula(hfp, privacy), "why": "; ".join(why)}


def _fluency(run: ContinualRun) -> dict[str, Any]:
    fluency = run.longform.get("fluency", np.full(run.stages + 1, math.nan))
    scored = [k for k in range(run.stages + 1) if not math.isnan(fluency[k])]
    last = scored[-1] if scored else None
    return {
        "fluency_stage0": json_number(float(fluency[0])),
        "fluency_final": json_number(float(fluency[last])) if last is not None else None,
        "fluency_final_stage": last,
    }


def run_summary(
    run: ContinualRun, n_boot: int = bs.DEFAULT_RESAMPLES, seed: int = bs.DEFAULT_SEED
) -> dict[str, Any]:
    """The numbers of one run as a JSON-ready dict (NaN → None, with every metric's notes).

    ``intervals`` holds the bootstrap intervals (``n_boot`` resamples, ``seed``; None with ``n_boot = 0``).
    """
    est = run.estimates
    assert est is not None and run.items is not None, "a ContinualRun from load_run carries its items"
    values = est.metrics
    base = {g: json_number(float(est.series[f"holdout_{g}"][0])) for g in GROUPS}
    notes = list(run.notes)
    if all(b is None for b in base.values()):
        notes.append(NO_BASE_NOTE)
    stages = {f"{m.name}_stage": values[m.name].stage for m in METRICS if values[m.name].stage is not None}
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
        "headline": headline(values, est.mia_scored),
        "metrics": {m.name: json_number(values[m.name].value) for m in METRICS} | stages | _fluency(run),
        "metric_notes": {key: list(v.notes) for key, v in values.items() if v.notes and key != "icu"},
        "base_rate": base,
        "per_stage": {s.name: _list(est.series[s.name]) for s in SERIES}
        | {name: _list(v) for name, v in est.series.items() if name.startswith(EXTERNAL_UTILITY)}
        | {"answer_entropy": _list(run.answer_entropy), "n_samples": list(run.n_samples)},
        "forget": {g: _list(est.forget[g]) for g in GROUPS},
        "intervals": _intervals_json(bs.bootstrap(run.items, est, n_boot=n_boot, seed=seed)),
        "stage_methods": {str(k): m for k, m in run.stage_methods.items()},
        "sources": {str(k): files for k, files in run.sources.items()},
        "notes": notes,
    }
