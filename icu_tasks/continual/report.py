"""The ICU-Bench report: ``report.md`` + ``report.json`` (one row per run) and the PNG figures.

:func:`run_summary` turns one :class:`~icu_tasks.continual.results.ContinualRun` into its metrics (defined in the README's "Continual runs", per
forget view VQA/QA/pooled, normalised against the base rate, with bootstrap intervals from
:mod:`icu_tasks.continual.bootstrap`), :func:`write_report` writes everything for one or several runs side by side.
Every file is written to a temp name and renamed, so a report file is complete or absent.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from icu_tasks.continual import bootstrap as bs
from icu_tasks.continual import metrics as im
from icu_tasks.continual import plots, retention
from icu_tasks.continual.results import ContinualRun
from icu_tasks.data.schema import VIEWS
from icu_tasks.run_layout import atomic_write_text

REPORT_MD = "report.md"
REPORT_JSON = "report.json"
FIRST_TASK_PNG = "first_task.png"
#: Forget-matrix columns shown in report.md (report.json always has the full matrix).
MD_MAX_TASKS = 20
#: Long-form rows of the per-stage table (``ContinualRun.longform``) and their digits.
LONGFORM_CELLS: tuple[tuple[str, int], ...] = (
    ("entropy", 2),
    ("repetition", 3),
    ("leakage_forget", 3),
    ("leakage_retain", 3),
)

#: (key in report.json's ``metrics``, column header in report.md), in table order.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("icu", "ICU ↑"),
    ("fe_vqa", "FE VQA ↑"),
    ("fe_qa", "FE QA ↑"),
    ("hfp_vqa", "HFP VQA ↑"),
    ("hfp_qa", "HFP QA ↑"),
    ("rebound_vqa", "rebound VQA ↓"),
    ("rebound_qa", "rebound QA ↓"),
    ("collateral_vqa", "collateral VQA ↓"),
    ("collateral_qa", "collateral QA ↓"),
    ("ru", "RU ↑"),
    ("ru_final", "RU final ↑"),
    ("stability", "stability ↑"),
)
#: Per-view metrics of a run's section: (metric name, header).
VIEW_COLUMNS: tuple[tuple[str, str], ...] = (
    ("icu", "ICU ↑"),
    ("fe", "FE ↑"),
    ("hfp", "HFP ↑"),
    ("rebound", "rebound ↓"),
    ("collateral", "collateral ↓"),
    ("over_forgetting", "over-forgetting ↓"),
)
NO_BASE_NOTE = "no holdout split scored: base rate B[0] = 0 in every normalised metric"

DEFINITIONS = """\
- **f[k][j]** (normalised forgetting) = clip((A[0][j] − A[k][j]) / (A[0][j] − B[0]), 0, 1), B[0] = the vanilla
  model's accuracy on never-seen holdout profiles (the base rate; 0 when no holdout split was scored). A task
  with A[0][j] − B[0] < 0.1 is excluded (see notes).
- **FE** (forgetting effectiveness) = mean_k f[k][k]: how much of task k is gone right after stage k (1 = all).
- **HFP** (historical forgetting preservation) = mean over k ≥ 2, j < k of f[k][j]: whether earlier tasks
  stay forgotten (undefined for a single stage).
- **rebound** = mean over k ≥ 2, j < k of max(0, A[k][j] − A[j][j]): accuracy an earlier task regained.
- **collateral** = mean over k ≥ 1, j > k of f[k][j]: forgetting of tasks not requested yet (ideal 0).
- **over-forgetting** = mean over k ≥ 1, j ≤ k of max(0, B[0] − A[k][j]): going below the base rate.
- **RU_k** = ½ (R[k]/R[0] + U[k]/U[0]); **RU** = mean over k ≥ 1; **RU final** = RU_T (1 = nothing lost).
- **stability** = 1 − mean_k |RU_k − RU_{k−1}|; the worst stage is the one with the largest swing.
- **ICU** = harmonic mean of FE, HFP (left out when undefined) and RU final, each clipped to [0, 1]: low for a
  method that forgets nothing and for one that collapses. The table shows the pooled view (both views' items).
- **fluency** = ROME's weighted bi/tri-gram entropy (bits) of the long-form summaries (`icu_longform` tasks:
  "Summarise the <record> of <name>.", forget and retain-eval profiles), stage 0 → last scored; near 0 for a
  collapsed model. **rep** = fraction of repeated 3-grams of those summaries (0 = none, → 1 for a loop).
  **leak F / leak R** = mean ROUGE-L recall of each private value of the profile inside its summary, forget /
  retain-eval profiles (verbatim leakage; forget should fall, retain should stay). The entropy of the short
  answers measures only their length and is not reported as fluency (report.json keeps it as
  `answer_entropy`).
- `x [lo, hi]`: bootstrap 95% percentile interval (items resampled within each cell, seeded).
- A stage that was not scored is a row of NaN, a cell the schedule did not score is NaN: both are left out of
  every mean (never imputed) and counted in each run's notes."""


def _num(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _list(x: np.ndarray) -> Any:
    return [_list(row) for row in x] if x.ndim > 1 else [_num(float(v)) for v in x]


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _slug(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text).strip("._") or "run"


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
        "metrics": {key: _num(v.value) for key, v in values.items()}
        | {
            "ru_final_stage": values["ru_final"].stage,
            "worst_stage": worst.stage,
            "worst_stage_swing": _num(worst.value),
            "fluency_stage0": _num(float(fluency[0])),
            "fluency_final": _num(float(fluency[last])) if last is not None else None,
            "fluency_final_stage": last,
        },
        "metric_notes": {key: list(v.notes) for key, v in values.items() if v.notes and key != "icu"},
        "base_rate": {view: _num(b) for view, b in base.items()},
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


def _labels(runs: list[ContinualRun]) -> list[str]:
    """Unique, file-safe labels for the runs (a repeated name gets a numeric suffix)."""
    labels: list[str] = []
    for run in runs:
        base = _slug(run.name)
        label, i = base, 2
        while label in labels:
            label, i = f"{base}_{i}", i + 1
        labels.append(label)
    return labels


def _figures(run: ContinualRun, label: str, out: Path) -> dict[str, str]:
    files = {}
    base = bs.base_rates(run)
    forget = {view: run.forget[view] for view in VIEWS} | {bs.POOLED: bs.pooled_forget(run)}
    for view, A in forget.items():
        if view in VIEWS:
            name = f"{label}_forget_{view}.png"
            title = f"{run.name} ({run.method}): forget {view.upper()} accuracy ({run.metric})"
            plots.forget_heatmap(A, out / name, title)
            files[f"forget_{view}"] = name
        name = f"{label}_collateral_{view}.png"
        title = f"{run.name} ({run.method}): normalised forgetting f, {view}, all tasks (j > k: collateral)"
        f = im.normalised_forgetting(A, base[view])
        plots.forget_heatmap(f, out / name, title, full=True, label="normalised forgetting f")
        files[f"collateral_{view}"] = name
    name = f"{label}_retain_utility.png"
    series = {"retain (both views)": run.retain}
    series |= {f"retain {view.upper()}": run.retain_by_view[view] for view in VIEWS}
    series["utility"] = run.utility
    plots.retain_utility_curves(
        series, out / name, f"{run.name} ({run.method}): retain and utility ({run.metric})"
    )
    files["retain_utility"] = name
    return files


def _with_ci(x: float | None, ci: list[float] | None, digits: int = 3) -> str:
    text = _fmt(x, digits)
    return text if ci is None or text == "n/a" else f"{text} [{ci[0]:.2f}, {ci[1]:.2f}]"


def _md_matrix(A: list[list[float | None]], ci: list | None, view: str) -> list[str]:
    n = min(len(A[0]), MD_MAX_TASKS) if A else 0
    if n == 0:
        return [f"Forget accuracy, {view.upper()}: no forget task scored.", ""]
    more = " (first tasks only; full matrix in report.json)" if len(A[0]) > n else ""
    lines = [
        f"Forget accuracy A[k][j], {view} (rows: after stage k; columns: task j; j > k: not requested "
        f"yet){more}",
        "",
    ]
    lines.append("| k | " + " | ".join(f"j={j}" for j in range(1, n + 1)) + " |")
    lines.append("|---" * (n + 1) + "|")
    for k, row in enumerate(A):
        cells = [_with_ci(row[j], ci[k][j] if ci else None, 2) for j in range(n)]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return lines + [""]


def _md_views(s: dict[str, Any]) -> list[str]:
    """The per-view metrics of one run with their intervals, and the retain-side metrics."""
    m, ci = s["metrics"], (s["intervals"] or {}).get("metrics", {})
    lines = [
        "| view | " + " | ".join(h for _, h in VIEW_COLUMNS) + " |",
        "|---" * (len(VIEW_COLUMNS) + 1) + "|",
    ]
    for view in bs.FORGET_VIEWS:
        keys = [f"{name}_{view}" for name, _ in VIEW_COLUMNS]
        lines.append(f"| {view} | " + " | ".join(_with_ci(m[key], ci.get(key)) for key in keys) + " |")
    ru = ", ".join(
        f"{label} {_with_ci(m[key], ci.get(key))}"
        for key, label in (("ru", "RU"), ("ru_final", "RU final"), ("stability", "stability"))
    )
    return lines + ["", f"{ru} (RU final from stage {m['ru_final_stage']})", ""]


def _missing_line(view: str, c: dict[str, int]) -> str:
    """One line on the unscored forget cells of a view (excluded from every mean, never imputed)."""
    if not c["missing"]:
        return f"forget {view.upper()}: all {c['cells']} cells A[k][j] scored"
    why = [
        f"{c[key]} {label}"
        for key, label in (
            ("unscored_stage", "in stages not scored"),
            ("outside_window", "outside the evaluation window"),
            ("other", "without a usable sample"),
        )
        if c[key]
    ]
    return (
        f"forget {view.upper()}: {c['missing']} of {c['cells']} cells A[k][j] not scored ({', '.join(why)}); "
        "left out of every mean, never imputed"
    )


def _md(summaries: list[dict[str, Any]], runs: list[ContinualRun], metric: str) -> str:
    out = ["# ICU-Bench continual unlearning report", "", f"Accuracy metric: `{metric}`.", ""]
    header = (
        ["run", "method", "stages scored"] + [h for _, h in COLUMNS] + ["worst stage", "fluency 0 → last"]
    )
    out.append("| " + " | ".join(header) + " |")
    out.append("|---" * len(header) + "|")
    for s in summaries:
        m = s["metrics"]
        scored = f"{len([k for k in s['scored_stages'] if k > 0])}/{s['stages']}"
        if 0 not in s["scored_stages"]:
            scored += " (no stage 0)"
        row = [s["name"], s["method"], scored] + [_fmt(m[key]) for key, _ in COLUMNS]
        row.append(
            "n/a" if m["worst_stage"] is None else f"{m['worst_stage']} (Δ {_fmt(m['worst_stage_swing'])})"
        )
        row.append(f"{_fmt(m['fluency_stage0'], 2)} → {_fmt(m['fluency_final'], 2)}")
        out.append("| " + " | ".join(row) + " |")
    out += [
        "",
        "n/a: undefined or not scored; the reason is in the run's notes below.",
        "",
        "## Definitions",
        "",
    ]
    out += [DEFINITIONS, ""]
    out += ["## First task across stages", "", f"![first task]({FIRST_TASK_PNG})", ""]
    for s, run in zip(summaries, runs, strict=True):
        out += [f"## {s['name']} ({s['method']})", "", f"- path: `{s['path']}`"]
        out.append(
            f"- stages: {s['stages']}; scored: {s['scored_stages'] or 'none'}; missing: {s['missing_stages'] or 'none'}"
        )
        out.append(f"- evaluation schedule: {s['schedule']['description']}")
        rates = ", ".join(f"{view} {_fmt_rate(b)}" for view, b in s["base_rate"].items())
        out.append(f"- base rate B[0] (vanilla accuracy on never-seen holdout profiles): {rates}")
        out += [f"- {_missing_line(view, c)}" for view, c in s["missing_cells"].items()]
        grouped: dict[str, list[str]] = {}
        for key, texts in s["metric_notes"].items():
            for text in texts:
                grouped.setdefault(text, []).append(key)
        notes = list(s["notes"]) + [f"{', '.join(keys)}: {text}" for text, keys in grouped.items()]
        out += [f"- note: {n}" for n in notes] + [""]
        out += _md_views(s)
        for view in bs.FORGET_VIEWS:
            out += _md_matrix(s["forget"][view], (s["intervals"] or {}).get("forget", {}).get(view), view)
        out += [
            "| k | retain | retain VQA | retain QA | utility | RU_k | fluency | rep | leak F | leak R | samples |",
            "|---" * 11 + "|",
        ]
        ps = s["per_stage"]
        for k in range(run.stages + 1):
            ci = s["intervals"] or {}
            cells = [_with_ci(ps["retain"][k], ci["retain"][k] if ci else None)]
            cells += [_fmt(ps[key][k]) for key in ("retain_vqa", "retain_qa")]
            cells += [_with_ci(ps[key][k], ci[key][k] if ci else None) for key in ("utility", "ru")]
            for row, digits in LONGFORM_CELLS:
                values = ps.get(f"longform_{row}")
                cells.append(_fmt(values[k] if values else None, digits))
            out.append(f"| {k} | " + " | ".join(cells) + f" | {ps['n_samples'][k]} |")
        out.append("")
        out += [f"![{key}]({name})" for key, name in s["figures"].items()] + [""]
    return "\n".join(out)


def write_report(
    runs: list[ContinualRun],
    out_dir: str | Path,
    n_boot: int = bs.DEFAULT_RESAMPLES,
    seed: int = bs.DEFAULT_SEED,
) -> dict[str, Any]:
    """Write report.md, report.json and the PNGs for ``runs`` into ``out_dir``; returns the JSON dict.

    ``n_boot`` bootstrap resamples (seeded with ``seed``; 0 = no intervals) give every interval.
    """
    if not runs:
        raise ValueError("write_report needs at least one run")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metric = runs[0].metric
    summaries = []
    for run, label in zip(runs, _labels(runs), strict=True):
        summary = run_summary(run, n_boot=n_boot, seed=seed)
        summary["figures"] = _figures(run, label, out)
        summaries.append(summary)
    series = {
        view: {f"{r.name} ({r.method})": r.forget[view][:, 0] for r in runs if r.tasks >= 1} for view in VIEWS
    }
    plots.first_task_curves(series, out / FIRST_TASK_PNG, f"Forget accuracy on the first task ({metric})")
    report = {"metric": metric, "runs": summaries, "figures": {"first_task": FIRST_TASK_PNG}}
    likelihood_md = _likelihood_sections(summaries, runs, out)
    atomic_write_text(
        out / REPORT_JSON, json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    )
    atomic_write_text(out / REPORT_MD, _md(summaries, runs, metric) + likelihood_md)
    return report


def _likelihood_sections(summaries: list[dict[str, Any]], runs: list[ContinualRun], out: Path) -> str:
    """Add each run's ``icu_ll`` / ``icu_mia`` numbers (:mod:`icu_tasks.continual.likelihood`) to its summary
    under ``likelihood`` (None when not scored), draw its curves, and return the report.md section ("" when
    no run has any)."""
    from icu_tasks.continual.likelihood import likelihood_curves, likelihood_markdown, likelihood_summary

    lines: list[str] = []
    for summary, run, label in zip(summaries, runs, _labels(runs), strict=True):
        summary["likelihood"] = likelihood = likelihood_summary(run.root)
        if likelihood is None:
            continue
        name = f"{label}_likelihood.png"
        title = f"{run.name} ({run.method}): task-1 probability, truth ratio, MIA AUC; retain probability"
        likelihood_curves(likelihood, out / name, title)
        likelihood["figure"] = name
        lines += likelihood_markdown(summary["name"], likelihood) + [f"![likelihood]({name})", ""]
    if not lines:
        return ""
    return "\n\n## Probability, truth ratio and membership inference\n\n" + "\n".join(lines)


def _fmt_rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
