"""Continual matrices from lmms-eval's own output files of every stage of a run dir.

A run dir ``RUN/`` holds ``run.json``, ``stage_K/`` (K >= 1) and ``eval/stage_K/`` (K >= 0; 0 = the vanilla
model) (:mod:`icu_tasks.records.layout`); each ``eval/stage_K`` holds lmms-eval output files, read by
:mod:`icu_tasks.report.samples` (the shell loop's ``lmms-eval`` CLI and the in-process runner write the same
files). A stage with no usable samples is a row of NaN and is listed in ``missing``.

The base rate B[k] comes from the split ``holdout`` (tasks ``icu_holdout_vqa`` / ``icu_holdout_qa`` and their
``_mc`` twins, part of the ``icu`` / ``icu_mc`` groups). Samples of the paraphrase tasks (``icu_*_para``,
payload ``"phrasing": "paraphrase"``) are left out of every matrix here, so scoring them never changes A.
Samples of the long-form tasks (``icu_longform_*``, metric keys ``longform_*``) carry no accuracy: they become
the per-stage fluency (long-form entropy, 3-gram repetition) and leakage (requested / not yet requested forget
profiles, retain-eval) rows of ``ContinualRun.longform``. Every scored item is kept with its profile
(:mod:`icu_tasks.report.items`) in ``ContinualRun.items``; the matrices are the registry's point estimates of
those items (:func:`icu_tasks.continual.bootstrap.estimate`), the same code the bootstrap resamples.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from icu_tasks.continual.bootstrap import Estimates, estimate
from icu_tasks.continual.fluency import fluency as fluency_of
from icu_tasks.continual.items import RunItems
from icu_tasks.data.schema import VIEWS
from icu_tasks.errors import ConfigError, StageError
from icu_tasks.records import layout
from icu_tasks.records.files import read_record
from icu_tasks.records.schedule import EvalSchedule
from icu_tasks.report.external import external_utility
from icu_tasks.report.items import ItemRows
from icu_tasks.report.samples import (
    DEFAULT_METRIC,
    METRICS,
    is_paraphrase,
    prediction,
    stage_records,
)

#: Rows of ``ContinualRun.longform``: registry series of the long-form items.
LONGFORM_ROWS: tuple[str, ...] = ("fluency", "repetition", "leak_requested", "leak_pending", "leak_retain")

RUN_FILE, STAGE_FILE, EVAL_DIR = layout.RUN_JSON, layout.STAGE_JSON, layout.EVAL_DIR


@dataclass
class ContinualRun:
    """The matrices of one run. Arrays have one row per stage 0..T (NaN where not scored).

    ``forget[view]`` has shape ``(T + 1, J)``: ``forget[view][k, j - 1]`` is A[k][j], the accuracy on forget
    task j after stage k, for every task seen in the samples (future tasks included). ``retain`` pools both
    views of retain-eval, ``retain_by_view`` keeps them apart; ``utility`` is the utility split;
    ``holdout[view]`` is B[k] (split ``holdout``: never-seen profiles; NaN where not scored).
    ``longform[row]`` (rows of :data:`LONGFORM_ROWS`) holds, per stage, the long-form fluency (``fluency``:
    ROME's n-gram entropy in bits; ``repetition``: repeated 3-gram fraction; both over forget and retain-eval
    summaries) and the leakage (mean ROUGE-L recall of the private values) of the requested (j ≤ k) and not
    yet requested (j > k) forget profiles and of the retain-eval profiles. ``answer_entropy`` is the mean
    n-gram entropy of the short generated answers: a length proxy kept for reference, NOT a fluency measure.

    ``items`` holds every scored item with its profile (the bootstrap's unit) and ``estimates`` every
    registered number as scored (:mod:`icu_tasks.continual.registry`); the arrays above are views of it.
    """

    root: Path
    name: str
    method: str
    metric: str
    forget: dict[str, np.ndarray]
    retain: np.ndarray
    retain_by_view: dict[str, np.ndarray]
    utility: np.ndarray
    answer_entropy: np.ndarray
    n_samples: list[int]
    stage_methods: dict[int, str] = field(default_factory=dict)
    sources: dict[int, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    holdout: dict[str, np.ndarray] = field(default_factory=dict)
    longform: dict[str, np.ndarray] = field(default_factory=dict)
    items: RunItems | None = None
    estimates: Estimates | None = None
    schedule: EvalSchedule = field(default_factory=EvalSchedule)

    @property
    def stages(self) -> int:
        """T, the number of unlearning stages the run has (or plans)."""
        return self.retain.shape[0] - 1

    @property
    def tasks(self) -> int:
        """J, the number of forget-task columns."""
        return self.forget[VIEWS[0]].shape[1]

    @property
    def A_vqa(self) -> np.ndarray:
        """Forget accuracy, image+question view: ``A_vqa[k, j - 1]`` = A[k][j]."""
        return self.forget["vqa"]

    @property
    def A_qa(self) -> np.ndarray:
        """Forget accuracy, text-only view: ``A_qa[k, j - 1]`` = A[k][j]."""
        return self.forget["qa"]

    @property
    def scored(self) -> list[int]:
        """Stages with at least one usable sample for the chosen metric."""
        return [k for k, n in enumerate(self.n_samples) if n > 0]

    @property
    def missing(self) -> list[int]:
        """Stages 0..T with nothing usable (not run yet, not scored, or a crashed evaluation)."""
        return [k for k, n in enumerate(self.n_samples) if n == 0]

    def missing_cells(self, view: str) -> dict[str, int]:
        """How many cells A[k][j] of ``forget[view]`` are NaN, and why (they are never imputed).

        ``unscored_stage``: in a stage with nothing scored (schedule, partial run or crash);
        ``outside_window``: a forget task the schedule's window left out at a scored stage; ``other``: a
        scored stage and a selected task without a usable sample.
        """
        A = self.forget[view]
        out = {"cells": int(A.size), "missing": 0, "unscored_stage": 0, "outside_window": 0, "other": 0}
        for k in range(A.shape[0]):
            keep = self.schedule.forget_tasks(k, A.shape[1])
            for j in range(1, A.shape[1] + 1):
                if not math.isnan(A[k, j - 1]):
                    continue
                out["missing"] += 1
                if self.n_samples[k] == 0:
                    out["unscored_stage"] += 1
                elif keep is not None and j not in keep:
                    out["outside_window"] += 1
                else:
                    out["other"] += 1
        return out


def is_run_dir(path: str | Path) -> bool:
    """True if ``path`` looks like a run dir: ``run.json``, ``stage_K/`` or ``eval/stage_K/`` inside."""
    root = Path(path)
    return root.is_dir() and (
        (root / RUN_FILE).is_file()
        or bool(layout.stage_indices(root))
        or bool(layout.stage_indices(root / EVAL_DIR))
    )


def _declared_stages(run_json: dict) -> int:
    """T as ``icu-bench run`` records it (``run.json`` ``stages``); 0 without a run.json."""
    value = run_json.get("stages")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _name_of(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def schedule_of(run_json: dict) -> EvalSchedule:
    """The evaluation schedule ``run.json`` records (``eval_every``, ``eval_window``); the full matrix without."""
    every, window = run_json.get("eval_every", 1), run_json.get("eval_window")
    try:
        return EvalSchedule(int(every), None if window is None else int(window))
    except (TypeError, ValueError, ConfigError) as err:
        raise StageError(f"run.json: invalid evaluation schedule ({err}); fix or remove the file") from None


def _stage_meta(root: Path, k: int, notes: list[str]) -> str | None:
    """The method named in ``stage_k/stage.json``; notes a forget-task list other than [k]."""
    path = layout.stage_dir(root, k) / STAGE_FILE
    if not path.is_file():
        return None
    meta = read_record(path)
    tasks = meta.get("forget_tasks")  # written by icu_unlearn.training.stage_dir.stage_record
    if tasks is not None and tasks != [k]:
        notes.append(f"stage {k} forgot task(s) {tasks}; the metrics assume stage k forgets task k")
    return _name_of(meta.get("method"))


def _read_run_json(root: Path) -> dict:
    return read_record(root / RUN_FILE)


def _stage_items(
    root: Path, T: int, metric: str, notes: list[str], progress: bool
) -> tuple[ItemRows, list[int], list[list[str]], dict[int, list[str]]]:
    """Every stage's items, how many carry ``metric``, the generated short answers and the files used."""
    from tqdm.auto import tqdm

    eval_stages = layout.stage_indices(root / EVAL_DIR)
    rows, n_samples, preds, sources = ItemRows(), [], [], {}
    # progress: a bar on a terminal only (tqdm disables itself on a pipe), so errors stay one line in logs
    for k in tqdm(
        range(T + 1), desc=f"reading {root.name}", unit="stage", disable=None if progress else True
    ):
        n, texts = 0, []
        if k in eval_stages:
            records, used, stage_notes = stage_records(layout.eval_dir(root, k))
            records = [rec for rec in records if not is_paraphrase(rec)]
            notes.extend(stage_notes)
            sources[k] = used
            n = rows.add_stage(k, records, metric)
            texts = [p for rec in records if (p := prediction(rec)) is not None]
        n_samples.append(n)
        preds.append(texts)
    return rows, n_samples, preds, sources


def _fields(est: Estimates, n_samples: list[int], metric: str, notes: list[str]) -> dict[str, Any]:
    """The ContinualRun arrays (views of the point estimates) and notes on splits a stage lacked."""
    s = est.series
    for k, n in enumerate(n_samples):
        if n and math.isnan(s["retain"][k]):
            notes.append(f"stage {k}: no retain-eval samples scored with {metric}")
        if n and math.isnan(s["utility"][k]):
            notes.append(f"stage {k}: no utility samples scored with {metric}")
    return {
        "forget": {view: est.forget[view] for view in VIEWS},
        "retain": s["retain"],
        "retain_by_view": {view: s[f"retain_{view}"] for view in VIEWS},
        "utility": s["utility"],
        "holdout": {view: s[f"holdout_{view}"] for view in VIEWS},
        "longform": {row: s[row] for row in LONGFORM_ROWS},
    }


def load_run(run_dir: str | Path, metric: str = DEFAULT_METRIC, progress: bool = False) -> ContinualRun:
    """Build the continual matrices of one run dir (finished or partial) for ``metric``.

    Raises :class:`StageError` if ``run_dir`` is not a run dir, :class:`ConfigError` for an unknown metric.
    """
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    root = Path(run_dir)
    if not root.exists():
        raise StageError(f"run dir {root} does not exist")
    if not is_run_dir(root):
        raise StageError(f"{root} is not a run dir (no {RUN_FILE}, stage_K/ or {EVAL_DIR}/stage_K/ inside)")
    run_json = _read_run_json(root)
    T = max(
        [_declared_stages(run_json), *layout.stage_indices(root), *layout.stage_indices(root / EVAL_DIR), 0]
    )
    notes: list[str] = []
    rows, n_samples, preds, sources = _stage_items(root, T, metric, notes, progress)
    items, item_notes = rows.freeze(T)
    notes.extend(item_notes)
    specs = run_json.get("utility_tasks") or []
    if specs:
        items = dataclasses.replace(items, external=external_utility(root, specs, T, notes))
    est = estimate(items)
    fields = _fields(est, n_samples, metric, notes)
    schedule = schedule_of(run_json)
    missing = [k for k, n in enumerate(n_samples) if n == 0]
    planned = [k for k in missing if not schedule.scored(k, T)]
    if planned:
        notes.append(
            f"stage(s) {', '.join(map(str, planned))} not scored by the schedule ({schedule.describe()})"
        )
    if set(missing) - set(planned):
        unplanned = ", ".join(str(k) for k in missing if k not in planned)
        notes.append(f"stage(s) {unplanned} not scored with {metric} (rows of NaN)")
    stage_methods = {k: m for k in range(1, T + 1) if (m := _stage_meta(root, k, notes))}
    method = _name_of(run_json.get("method"))
    if method is None and stage_methods:
        method = Counter(stage_methods.values()).most_common(1)[0][0]
    return ContinualRun(
        root=root,
        name=_name_of(run_json.get("name")) or root.resolve().name,
        method=method or root.resolve().name,
        metric=metric,
        answer_entropy=np.array([fluency_of(texts) for texts in preds]),
        n_samples=n_samples,
        stage_methods=stage_methods,
        sources=sources,
        notes=notes,
        schedule=schedule,
        items=items,
        estimates=est,
        **fields,
    )
