"""Continual matrices from lmms-eval's own output files of every stage of a run dir.

A run dir ``RUN/`` holds ``run.json``, ``stage_K/`` (K >= 1) and ``eval/stage_K/`` (K >= 0; 0 = the vanilla
model) (:mod:`icu_tasks.records.layout`); each ``eval/stage_K`` holds lmms-eval output files, read by
:mod:`icu_tasks.report.samples` (the shell loop's ``lmms-eval`` CLI and the in-process runner write the same
files). A stage with no usable samples is a row of NaN and is listed in ``missing``.

The base rate B[k] comes from the split ``holdout`` (tasks ``icu_holdout_vqa`` / ``icu_holdout_qa`` and their
``_mc`` twins, part of the ``icu`` / ``icu_mc`` groups). Samples of the paraphrase tasks (``icu_*_para``,
payload ``"phrasing": "paraphrase"``) are left out of every matrix here, so scoring them never changes A.
Samples of the long-form tasks (``icu_longform_*``, metric keys ``longform_*``) carry no accuracy: they become
the per-stage fluency (long-form entropy, 3-gram repetition) and leakage (forget / retain-eval) rows of
``ContinualRun.longform``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from icu_tasks.continual.fluency import fluency as fluency_of
from icu_tasks.continual.longform import LONGFORM_ROWS, longform_means
from icu_tasks.data.schema import VIEWS
from icu_tasks.errors import ConfigError, StageError
from icu_tasks.harness import answer_metrics
from icu_tasks.records import layout
from icu_tasks.records.files import read_record
from icu_tasks.records.schedule import EvalSchedule
from icu_tasks.report.samples import (
    is_paraphrase,
    prediction,
    score,
    stage_records,
)

#: Scores selectable for A, R and U; ``mc_accuracy`` reads the multiple-choice (``_mc``) tasks.
METRICS: tuple[str, ...] = (*sorted(answer_metrics.GENERATE_METRICS), "mc_accuracy")
DEFAULT_METRIC = "contains"

RUN_FILE, STAGE_FILE, EVAL_DIR = layout.RUN_JSON, layout.STAGE_JSON, layout.EVAL_DIR


@dataclass
class ContinualRun:
    """The matrices of one run. Arrays have one row per stage 0..T (NaN where not scored).

    ``forget[view]`` has shape ``(T + 1, J)``: ``forget[view][k, j - 1]`` is A[k][j], the accuracy on forget
    task j after stage k, for every task seen in the samples (future tasks included). ``retain`` pools both
    views of retain-eval, ``retain_by_view`` keeps them apart; ``utility`` is the utility split.
    ``longform[row]`` (rows of :data:`LONGFORM_ROWS`) holds, per stage, the mean over the long-form samples of
    the fluency (``entropy``: ROME's n-gram entropy in bits; ``repetition``: repeated 3-gram fraction; both
    over forget and retain-eval summaries) and of the leakage (mean ROUGE-L recall of the private values) of
    the forget and the retain-eval profiles. ``answer_entropy`` is the mean n-gram entropy of the short
    generated answers: a length proxy kept for reference, NOT a fluency measure (1-6 token answers).

    The per-item scores behind every mean are kept for resampling (:mod:`icu_tasks.continual.bootstrap`):
    ``forget_items[view][k][j - 1]``, ``retain_items[view][k]``, ``utility_items[k]`` and
    ``holdout_items[view][k]`` (split ``holdout``: never-seen profiles, the base rate B[k]; empty arrays
    where nothing was scored). ``holdout[view]`` is B[k] per stage (NaN where the split was not scored).
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
    forget_items: dict[str, list[list[np.ndarray]]] = field(default_factory=dict)
    retain_items: dict[str, list[np.ndarray]] = field(default_factory=dict)
    utility_items: list[np.ndarray] = field(default_factory=list)
    holdout_items: dict[str, list[np.ndarray]] = field(default_factory=dict)
    holdout: dict[str, np.ndarray] = field(default_factory=dict)
    longform: dict[str, np.ndarray] = field(default_factory=dict)
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


Score = tuple[float, str, str, int]


def _stage_scores(
    root: Path, T: int, metric: str, notes: list[str], progress: bool
) -> tuple[list[list[Score]], list[list[str]], dict[int, list[str]], dict[str, np.ndarray]]:
    """Per stage 0..T: the (value, split, view, forget task) scores, the generated answers, the files used;
    and the long-form rows (``ContinualRun.longform``)."""
    from tqdm.auto import tqdm

    eval_stages = layout.stage_indices(root / EVAL_DIR)
    per_stage: list[list[Score]] = []
    preds: list[list[str]] = []
    sources: dict[int, list[str]] = {}
    longform = {row: np.full(T + 1, math.nan) for row, _, _ in LONGFORM_ROWS}
    # progress: a bar on a terminal only (tqdm disables itself on a pipe), so errors stay one line in logs
    for k in tqdm(
        range(T + 1), desc=f"reading {root.name}", unit="stage", disable=None if progress else True
    ):
        scores, texts = [], []
        if k in eval_stages:
            records, used, stage_notes = stage_records(layout.eval_dir(root, k))
            records = [rec for rec in records if not is_paraphrase(rec)]
            notes.extend(stage_notes)
            sources[k] = used
            scores = [s for rec in records if (s := score(rec, metric)) is not None]
            texts = [p for rec in records if (p := prediction(rec)) is not None]
            for row, value in longform_means(records).items():
                longform[row][k] = value
        per_stage.append(scores)
        preds.append(texts)
    return per_stage, preds, sources, longform


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _matrices(per_stage: list[list[Score]], J: int, metric: str, notes: list[str]) -> dict[str, Any]:
    """The ContinualRun fields holding scores (matrices, vectors, per-item arrays) from the per-stage scores."""
    n, empty = len(per_stage), np.zeros(0)
    out: dict[str, Any] = {
        "forget": {view: np.full((n, J), math.nan) for view in VIEWS},
        "retain": np.full(n, math.nan),
        "retain_by_view": {view: np.full(n, math.nan) for view in VIEWS},
        "utility": np.full(n, math.nan),
        "holdout": {view: np.full(n, math.nan) for view in VIEWS},
        "forget_items": {view: [[empty] * J for _ in range(n)] for view in VIEWS},
        "retain_items": {view: [empty] * n for view in VIEWS},
        "holdout_items": {view: [empty] * n for view in VIEWS},
        "utility_items": [empty] * n,
    }
    for k, scores in enumerate(per_stage):
        cells: dict[tuple[str, int], list[float]] = defaultdict(list)
        by_split: dict[tuple[str, str], list[float]] = defaultdict(list)
        util: list[float] = []
        for value, split, view, task in scores:
            if split == "forget" and task >= 1 and view in VIEWS:
                cells[(view, task)].append(value)
            elif split in ("retain_eval", "holdout"):
                by_split[(split, view)].append(value)
            elif split == "utility":
                util.append(value)
        for (view, task), values in cells.items():
            out["forget_items"][view][k][task - 1] = np.asarray(values, dtype=float)
            out["forget"][view][k, task - 1] = _mean(values)
        pooled = [v for (split, _), values in by_split.items() if split == "retain_eval" for v in values]
        out["retain"][k], out["utility"][k] = _mean(pooled), _mean(util)
        out["utility_items"][k] = np.asarray(util, dtype=float)
        for view in VIEWS:
            for split, vec, items in (("retain_eval", "retain_by_view", "retain_items"),
                                      ("holdout", "holdout", "holdout_items")):  # fmt: skip
                values = by_split[(split, view)]
                out[items][view][k] = np.asarray(values, dtype=float)
                out[vec][view][k] = _mean(values)
        if scores and not pooled:
            notes.append(f"stage {k}: no retain-eval samples scored with {metric}")
        if scores and not util:
            notes.append(f"stage {k}: no utility samples scored with {metric}")
    return out


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
    per_stage, preds, sources, longform = _stage_scores(root, T, metric, notes, progress)
    J = max([T, *(s[3] for scores in per_stage for s in scores if s[1] == "forget")])
    fields = _matrices(per_stage, J, metric, notes)
    n_samples = [len(s) for s in per_stage]
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
        longform=longform,
        **fields,
    )
