"""External utility tasks: any lmms-eval task's main metric, per stage, as a source of RU's utility term.

A run started with ``--utility-tasks T1,T2:metric`` (``RunConfig.utility_tasks``, recorded in run.json) scores
those lmms-eval tasks after every stage with the ICU tasks. The report reads each one's aggregate metric from
the stage's newest lmms-eval results file that has it: the metric named after ``:``, else the task's first
numeric metric (lmms-eval keys are ``"<metric>,<filter>"``; standard errors are skipped). Each task is then
normalised by its own stage-0 value inside RU (:mod:`icu_tasks.continual.retention`). Its items carry no
profile, so the profile bootstrap holds it fixed: its interval is the point.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from icu_tasks.errors import ConfigError
from icu_tasks.records import layout
from icu_tasks.report.samples import _RESULTS


def parse_utility_task(spec: str) -> tuple[str, str | None]:
    """``"task"`` or ``"task:metric"`` → ``(task, metric or None)``; an empty part is a ConfigError."""
    task, _, metric = str(spec).partition(":")
    if not task.strip() or (":" in str(spec) and not metric.strip()):
        raise ConfigError(f"a utility task is TASK or TASK:METRIC, got {spec!r}")
    return task.strip(), metric.strip() or None


def check_utility_tasks(specs: Sequence[str], scored: Sequence[str]) -> list[str]:
    """The specs, checked: well formed, no task twice, none of them one of the ICU tasks already ``scored``."""
    tasks = [parse_utility_task(s)[0] for s in specs]
    if len(set(tasks)) != len(tasks):
        raise ConfigError(f"a utility task is named twice: {', '.join(specs)}")
    clash = sorted(set(tasks) & set(scored))
    if clash:
        raise ConfigError(
            f"{', '.join(clash)} is already scored as an ICU task; utility tasks are extra tasks"
        )
    return [str(s) for s in specs]


def metric_value(task_results: dict, metric: str | None) -> tuple[str, float] | None:
    """``(metric key, value)`` of one task's lmms-eval results: ``metric`` (any filter) or the first numeric
    metric that is not a standard error; None if there is none."""
    for key, value in task_results.items():
        name = key.partition(",")[0]
        if "stderr" in name or name == "alias" or isinstance(value, bool):
            continue
        if (metric is None or name == metric) and isinstance(value, (int, float)):
            return key, float(value)
    return None


def _stage_value(stage_eval_dir: Path, task: str, metric: str | None) -> tuple[str, float] | None:
    """The task's metric from the newest results file of one stage's eval dir that scored it."""
    files = sorted(
        (p for p in stage_eval_dir.rglob("*_results.json") if _RESULTS.match(p.name)), reverse=True
    )
    for path in files:
        try:
            results = json.loads(path.read_text(encoding="utf-8")).get("results", {})
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            continue
        if task in results:
            return metric_value(results[task], metric)
    return None


def external_utility(root: Path, specs: Sequence[str], T: int, notes: list[str]) -> dict[str, np.ndarray]:
    """Per-stage values ``(T + 1,)`` of every utility task of ``specs`` (NaN where a stage lacks it)."""
    out: dict[str, np.ndarray] = {}
    eval_stages = set(layout.stage_indices(root / layout.EVAL_DIR))
    for spec in specs:
        task, metric = parse_utility_task(spec)
        values = np.full(T + 1, math.nan)
        keys = set()
        for k in range(T + 1):
            found = _stage_value(layout.eval_dir(root, k), task, metric) if k in eval_stages else None
            if found is not None:
                keys.add(found[0])
                values[k] = found[1]
        if not keys:
            notes.append(f"utility task {spec}: no stage's results have it; left out of RU")
            continue
        notes.append(f"utility task {task}: {', '.join(sorted(keys))} per stage, in RU's utility term")
        out[task] = values
    return out


__all__ = ["check_utility_tasks", "external_utility", "metric_value", "parse_utility_task"]
