"""``icu-bench sweep``: a grid of one method's hyper-parameters on stage 1, scored fast, with a selection rule.

Every grid point runs stage 1 (forget task 1) from the vanilla model, loaded once and copied per point, and is
scored by teacher-forced accuracy (:mod:`icu_unlearn.training.knowledge`: one forward pass per batch, no decoding) on
forget task 1 per view, retain-eval and, when the data has a holdout split, the holdout profiles (the base rate
B0 of what a model that never saw a profile gets right). Normalised forgetting per view is the continual
metric's ``clip((A0 − A1) / (A0 − B0), 0, 1)`` (:func:`icu_tasks.continual.metrics.normalised_forgetting`).

Selection rule (fixed before looking at any result): among the points with normalised forgetting ≥ 0.9 on both
views of task 1 and retain-eval accuracy ≥ 0.9 × the vanilla model's, the smallest budget (``max_steps``, then
``learning_rate``, for MANU ``prune_fraction``; ties: the higher retain-eval). If no point qualifies, the best
trade-off — the highest ``min(f_vqa, f_qa) × min(1, retain / retain_vanilla)`` — and the table says so.

Layout of ``OUT``: ``sweep.json`` (the spec: method, grid, fixed values, base, data hash; a rerun with another
spec is refused), ``vanilla.json``, ``points/<id>/stage_1`` and ``points/<id>/result.json``, then the table as
``sweep.md``, ``sweep.csv`` and ``results.json``. A rerun skips every point with a ``result.json``: an
interrupted sweep resumes.
"""

from __future__ import annotations

import copy
import csv
import io
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

from icu_tasks.data.schema import VIEWS
from icu_tasks.errors import ConfigError
from icu_tasks.records.layout import atomic_write_json, atomic_write_text
from icu_unlearn.methods import build_method, canonical_name
from icu_unlearn.models import load_base
from icu_unlearn.training.unlearn import run_stage

FORGET_MIN, RETAIN_RATIO = 0.9, 0.9
BUDGET_KEYS = ("max_steps", "learning_rate", "prune_fraction")


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in the order given (the last key varies fastest)."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def point_id(index: int, point: dict[str, Any]) -> str:
    """``p00-learning_rate=0.001,max_steps=25``: a stable, readable dir name."""
    return f"p{index:02d}-" + ",".join(f"{k}={v}" for k, v in point.items())


def score_groups(data: Any) -> dict[str, list]:
    """The probe groups: forget task 1 per view, retain-eval (both views), holdout per view when present."""
    from icu_unlearn.training.data import examples_from_rows

    groups = {f"forget_{v}": examples_from_rows(data, data.forget(1, view=v)) for v in VIEWS}
    groups["retain"] = examples_from_rows(data, data.retain("eval"))
    for v in VIEWS:
        try:
            rows = data.rows(split="holdout", view=v)
        except ConfigError:  # a data set without a holdout split
            rows = []
        if rows:
            groups[f"holdout_{v}"] = examples_from_rows(data, rows)
    return groups


def _check_spec(out: Path, spec: dict[str, Any]) -> None:
    path = out / "sweep.json"
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != spec:
            changed = sorted(k for k in spec if old.get(k) != spec[k])
            raise ConfigError(
                f"{out} holds a sweep with other settings ({', '.join(changed)}); use another --out"
            )
    else:
        atomic_write_json(path, spec)


def sweep(
    method: str,
    base: str | os.PathLike,
    data_dir: str | os.PathLike,
    out: str | os.PathLike,
    grid: dict[str, list[Any]],
    fixed: dict[str, Any] | None = None,
    *,
    device: str | None = None,
) -> dict[str, Any]:
    """Run (or resume) the sweep and write its table; returns ``results.json``'s content."""
    from icu_tasks.data.dataset import open_data
    from icu_unlearn.models.loading import check_device_name, resolve_model_dir

    out = Path(out)
    methods, points, grid, fixed = _checked_points(method, grid, dict(fixed or {}))
    check_device_name(device)
    resolve_model_dir(base)
    data = open_data(data_dir)
    spec = {"method": canonical_name(method), "grid": grid, "fixed": fixed, "base": str(Path(base).resolve())}
    spec["data_hash"] = data.data_hash
    _check_spec(out, spec)
    # torch and transformers only once every input is checked: a typo is refused in well under a second
    from icu_unlearn.training.data import Collator
    from icu_unlearn.training.knowledge import group_accuracy

    model, processor = load_base(base, device=device)
    groups, collator = score_groups(data), Collator(processor)
    vanilla_path = out / "vanilla.json"
    if not vanilla_path.is_file():
        atomic_write_json(vanilla_path, group_accuracy(model, collator, groups))
    vanilla = json.loads(vanilla_path.read_text(encoding="utf-8"))
    rows = []
    for index, (point, m) in enumerate(zip(points, methods, strict=True)):
        pdir = out / "points" / point_id(index, point)
        result = pdir / "result.json"
        if not result.is_file():
            _run_point(m, point, base, data_dir, pdir, (model, processor), collator, groups, device)
        rows.append(_row(json.loads(result.read_text(encoding="utf-8")), vanilla))
    summary = {"spec": spec, "vanilla": vanilla, "rows": rows, **select(rows, vanilla)}
    write_tables(out, summary)
    return summary


def _checked_points(
    method: str, grid: dict[str, list[Any]], fixed: dict[str, Any]
) -> tuple[list[Any], list[dict[str, Any]], dict[str, list[Any]], dict[str, Any]]:
    """Build (and so check) every point's method before any work: ``(methods, points, grid, fixed)`` with the
    values typed as the method's config holds them."""

    if not grid:
        raise ConfigError("the grid is empty: give at least one --grid KEY=V1,V2")
    overlap = sorted(set(grid) & set(fixed))
    if overlap:
        raise ConfigError(f"{', '.join(overlap)} given both in --grid and --set")
    points = grid_points(grid)
    methods = [build_method(method, **fixed, **p) for p in points]
    points = [{k: getattr(m.config, k) for k in p} for p, m in zip(points, methods, strict=True)]
    grid = {k: list(dict.fromkeys(p[k] for p in points)) for k in grid}
    fixed = {k: getattr(methods[0].config, k) for k in fixed}
    return methods, points, grid, fixed


def _run_point(
    method: Any,
    point: dict[str, Any],
    base: str | os.PathLike,
    data_dir: str | os.PathLike,
    pdir: Path,
    loaded: tuple[Any, Any],
    collator: Any,
    groups: dict[str, list],
    device: str | None,
) -> None:
    """Run stage 1 of one point from a copy of the loaded vanilla model, score it, write ``result.json``."""
    from icu_unlearn.training.knowledge import group_accuracy

    model, processor = loaded
    start = time.perf_counter()
    stage = run_stage(
        method,
        base,
        data_dir,
        1,
        pdir,
        device=device,
        overwrite=True,
        loaded=(copy.deepcopy(model), processor),
    )
    scores = group_accuracy(stage.model, collator, groups)
    record = {"point": point, "scores": scores, "steps": stage.record.get("steps")}
    record["seconds"] = round(time.perf_counter() - start, 2)
    atomic_write_json(pdir / "result.json", record)


def _row(record: dict[str, Any], vanilla: dict[str, float]) -> dict[str, Any]:
    """One table row: the point, accuracies and normalised forgetting per view."""
    from icu_tasks.continual.metrics import normalised_forgetting

    scores = record["scores"]
    row = {**record["point"], **{k: scores[k] for k in sorted(scores)}}
    for v in VIEWS:
        base = vanilla.get(f"holdout_{v}")
        f = normalised_forgetting([[vanilla[f"forget_{v}"]], [scores[f"forget_{v}"]]], base)[1, 0]
        row[f"f_{v}"] = None if f != f else float(f)  # NaN (vanilla barely above the base rate) → None
    row["retain_ratio"] = scores["retain"] / vanilla["retain"] if vanilla["retain"] else None
    row["steps"], row["seconds"] = record.get("steps"), record.get("seconds")
    return row


def _budget(row: dict[str, Any]) -> tuple:
    return tuple(row.get(k, 0) for k in BUDGET_KEYS) + (-(row["retain_ratio"] or 0.0),)


def select(rows: list[dict[str, Any]], vanilla: dict[str, float]) -> dict[str, Any]:
    """The rule's pick (index into ``rows``) and whether it met the rule (see the module docstring)."""
    ok = [
        i
        for i, r in enumerate(rows)
        if all((r[f"f_{v}"] or 0.0) >= FORGET_MIN for v in VIEWS)
        and (r["retain_ratio"] or 0.0) >= RETAIN_RATIO
    ]
    if ok:
        pick = min(ok, key=lambda i: _budget(rows[i]))
        return {"pick": pick, "rule_met": True, "rule": _rule_text()}

    def tradeoff(r: dict[str, Any]) -> float:
        return min(r[f"f_{v}"] or 0.0 for v in VIEWS) * min(1.0, r["retain_ratio"] or 0.0)

    pick = max(range(len(rows)), key=lambda i: tradeoff(rows[i])) if rows else None
    return {"pick": pick, "rule_met": False, "rule": _rule_text()}


def _rule_text() -> str:
    return (
        f"smallest budget ({', '.join(BUDGET_KEYS)}) with normalised forgetting >= {FORGET_MIN} on both views of "
        f"task 1 and retain-eval >= {RETAIN_RATIO} x vanilla; if none, the highest "
        f"min({', '.join(f'f_{v}' for v in VIEWS)}) x min(1, retain / vanilla retain)"
    )


def write_tables(out: Path, summary: dict[str, Any]) -> None:
    """``sweep.md`` (the pick in bold), ``sweep.csv`` and ``results.json``."""
    rows, pick = summary["rows"], summary["pick"]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["pick", *columns])
    writer.writeheader()
    for i, r in enumerate(rows):
        writer.writerow({"pick": int(i == pick), **r})
    atomic_write_text(out / "sweep.csv", buf.getvalue())
    atomic_write_json(out / "results.json", summary)
    spec, vanilla = summary["spec"], summary["vanilla"]
    lines = [
        f"# Sweep: {spec['method']} (stage 1, forget task 1)",
        "",
        f"Vanilla: {', '.join(f'{k} {v:.3f}' for k, v in sorted(vanilla.items()))}. Fixed: {spec['fixed'] or 'none'}.",
        "",
        f"Rule: {summary['rule']}.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for i, r in enumerate(rows):
        cells = [_cell(r.get(c)) for c in columns]
        lines.append("| " + " | ".join(f"**{c}**" if i == pick and c else c for c in cells) + " |")
    lines.append("")
    if pick is None:
        lines.append("No point was run.")
    elif summary["rule_met"]:
        lines.append(f"Pick (bold): row {pick + 1}, the smallest budget that meets the rule.")
    else:
        lines.append(f"No point meets the rule; bold: row {pick + 1}, the best trade-off.")
    atomic_write_text(out / "sweep.md", "\n".join(lines) + "\n")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "" if value is None else str(value)
