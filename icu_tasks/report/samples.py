"""Reading lmms-eval's output files of one evaluation dir: the merged per-sample records and their scores.

``eval/stage_K`` of a run dir is the ``--output_path`` of one or more lmms-eval evaluations with
``--log_samples``. lmms-eval 0.7.3 (``loggers/evaluation_tracker.py``) writes, under a sub-folder named after
the model (``sanitize_model_name`` of ``pretrained=``; absent when no model_args were given):

* ``<date>_results.json`` — aggregated scores plus ``configs`` (the tasks) and ``n-samples``; written first;
* ``<date>_samples_<task>.jsonl`` — one record per doc, written after the results file, in append mode. A
  record holds ``doc_id``, ``doc``, ``target``, ``filtered_resps`` … and, under every metric name, what the
  task's ``process_results`` returned: for the ICU tasks the payload dict ``{"id", "profile_id",
  "forget_task", "split", "view", "field", "prediction", "exact_match", "contains", "rougeL_recall", "score"}``
  (``mc_accuracy`` for ``_mc``), the same under every metric but for ``score``, that metric's own value
  (lmms-eval's standard error reads it; records written before version 1.1 of the tasks have no ``score`` and
  read the same).

So the same reader serves the shell loop (``lmms-eval`` CLI) and the in-process runner (``simple_evaluate`` +
``EvaluationTracker``). Several evaluations in one stage dir are merged per task: for each task the newest
*complete* samples file wins (complete = its results file exists and the file has ``n-samples.effective``
parseable records).
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from icu_tasks.errors import StageError
from icu_tasks.harness.hooks import GENERATE_METRICS

__all__ = [
    "METRICS",
    "DEFAULT_METRIC",
    "GENERATE_METRICS",
    "read_json",
    "stage_records",
    "score",
    "prediction",
    "is_paraphrase",
]

#: Scores selectable for A, R and U; ``mc_accuracy`` reads the multiple-choice (``_mc``) tasks.
METRICS: tuple[str, ...] = (*sorted(GENERATE_METRICS), "mc_accuracy")
DEFAULT_METRIC = "contains"

_RESULTS = re.compile(r"^(?P<date>.+)_results\.json$")
_SAMPLES = re.compile(r"^(?P<date>.+?)_samples_(?P<task>.+)\.jsonl$")


def read_json(path: Path, what: str) -> Any:
    """A JSON file; StageError naming it if it cannot be read."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StageError(
            f"{path}: cannot read {what} ({type(err).__name__}); fix or remove the file"
        ) from None


def _read_records(path: Path) -> tuple[list[dict], bool]:
    """The parseable JSON records of a samples file and whether every non-empty line parsed."""
    records, clean = [], True
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                clean = False  # a truncated last line: the writer was killed
                continue
            if isinstance(rec, dict):
                records.append(rec)
    return records, clean


def _expected_count(results: dict, task: str) -> int | None:
    n = results.get("n-samples", {}).get(task, {})
    eff = n.get("effective") if isinstance(n, dict) else None
    return int(eff) if isinstance(eff, (int, float)) else None


def stage_records(stage_eval_dir: Path) -> tuple[list[dict], list[str], list[str]]:
    """Merge the lmms-eval sample records of one stage's eval dir.

    Returns (records, files used, notes). Per task the newest complete samples file wins; records are then
    deduplicated by (scoring kind, sample id), newer files overriding older ones.
    """
    notes: list[str] = []
    results_by_key: dict[tuple[Path, str], dict] = {}
    for path in sorted(stage_eval_dir.rglob("*_results.json")):
        m = _RESULTS.match(path.name)
        if m:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                notes.append(
                    f"{path}: unreadable results file (an evaluation killed while writing?), skipped"
                )
                continue
            results_by_key[(path.parent, m.group("date"))] = data if isinstance(data, dict) else {}
    candidates: dict[str, list[tuple[tuple[str, float], Path, int | None]]] = defaultdict(list)
    orphans = 0
    for path in stage_eval_dir.rglob("*_samples_*.jsonl"):
        m = _SAMPLES.match(path.name)
        if not m:
            continue
        results = results_by_key.get((path.parent, m.group("date")))
        if results is None:
            orphans += 1
            continue
        task = m.group("task")
        if results.get("configs") and task not in results["configs"]:
            continue
        order = (m.group("date"), path.stat().st_mtime)
        candidates[task].append((order, path, _expected_count(results, task)))
    if orphans:
        notes.append(f"{stage_eval_dir}: ignored {orphans} samples file(s) without their results file")
    chosen: list[tuple[tuple[str, float], Path, list[dict]]] = []
    for task, options in sorted(candidates.items()):
        for order, path, expected in sorted(options, key=lambda o: o[0], reverse=True):
            records, clean = _read_records(path)
            if clean and (expected is None or len(records) >= expected):
                chosen.append((order, path, records))
                break
            notes.append(f"{path}: incomplete ({len(records)} of {expected} records), skipped")
        else:
            notes.append(f"{stage_eval_dir}: no complete samples file for task {task}")
    merged: dict[tuple[str, str], dict] = {}
    for _, path, records in sorted(chosen, key=lambda c: c[0]):
        for i, rec in enumerate(records):
            kind = "mc" if "mc_accuracy" in rec else "gen"
            payload = _payload(rec, ("mc_accuracy",) if kind == "mc" else GENERATE_METRICS)
            sid = payload.get("id") if payload else None
            merged[(kind, str(sid) if sid is not None else f"{path}:{i}")] = rec
    return list(merged.values()), [str(c[1]) for c in chosen], notes


def _payload(rec: dict, metrics: tuple[str, ...]) -> dict | None:
    """The process_results payload of a record (first of ``metrics`` stored as a dict), else None."""
    for name in metrics:
        value = rec.get(name)
        if isinstance(value, dict):
            return value
    return None


def score(rec: dict, metric: str, with_meta: bool = False) -> tuple | None:
    """(value, split, view, forget_task) of a record for ``metric``, or None if it does not carry it;
    with ``with_meta``, (value, payload) instead (the payload holds split, view, forget_task, profile_id)."""
    if metric not in rec:
        return None
    value = rec[metric]
    meta = value if isinstance(value, dict) else rec.get("doc") or {}
    if isinstance(value, dict):
        value = value.get(metric)
    try:
        score = float(value)
        split, view, task = str(meta["split"]), str(meta["view"]), int(meta.get("forget_task") or 0)
    except (KeyError, TypeError, ValueError):
        return None
    if math.isnan(score):
        return None
    return (score, meta) if with_meta else (score, split, view, task)


def is_paraphrase(rec: dict) -> bool:
    """A sample of a ``_para`` task (held-out phrasing): kept out of A, R, U, B and the fluency."""
    payload = _payload(rec, (*GENERATE_METRICS, "mc_accuracy"))
    return bool(payload and payload.get("phrasing"))


def prediction(rec: dict) -> str | None:
    payload = _payload(rec, GENERATE_METRICS)
    if payload is None or "mc_accuracy" in rec:
        return None
    pred = payload.get("prediction")
    return pred if isinstance(pred, str) else None
