"""The ICU-Bench report: ``report.md`` + ``report.json`` (one row per run) and the PNG figures.

:func:`write_report` writes everything for one or several runs side by side: each run's summary
(:mod:`icu_tasks.report.summary`), the markdown (:mod:`icu_tasks.report.markdown`), the figures
(:mod:`icu_tasks.report.plots`) and the likelihood section (:mod:`icu_tasks.report.likelihood`). Every file
is written to a temp name and renamed, so a report file is complete or absent.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from icu_tasks.continual import bootstrap as bs
from icu_tasks.continual import metrics as im
from icu_tasks.data.schema import VIEWS
from icu_tasks.records.files import stamped
from icu_tasks.records.layout import REPORT_JSON, atomic_write_text
from icu_tasks.report import plots
from icu_tasks.report.likelihood import likelihood_curves, likelihood_markdown, likelihood_summary
from icu_tasks.report.markdown import report_markdown
from icu_tasks.report.results import ContinualRun
from icu_tasks.report.summary import run_summary

REPORT_MD = "report.md"
FIRST_TASK_PNG = "first_task.png"


def _slug(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text).strip("._") or "run"


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
    report = stamped(
        REPORT_JSON, {"metric": metric, "runs": summaries, "figures": {"first_task": FIRST_TASK_PNG}}
    )
    likelihood_md = _likelihood_sections(summaries, runs, out)
    atomic_write_text(
        out / REPORT_JSON, json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    )
    atomic_write_text(out / REPORT_MD, report_markdown(summaries, metric, FIRST_TASK_PNG) + likelihood_md)
    return report


def _likelihood_sections(summaries: list[dict[str, Any]], runs: list[ContinualRun], out: Path) -> str:
    """Add each run's ``icu_ll`` / ``icu_mia`` numbers (:mod:`icu_tasks.report.likelihood`) to its summary
    under ``likelihood`` (None when not scored), draw its curves, and return the report.md section ("" when
    no run has any)."""

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
