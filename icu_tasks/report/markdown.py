"""``report.md``: the text of the continual report, rendered from the runs' summaries.

:func:`report_markdown` renders what :func:`icu_tasks.report.summary.run_summary` computed (the overview
table, the metric definitions, and per run its facts, notes, per-view metrics, forget matrices and per-stage
table); it computes nothing itself. :func:`fmt` is the one number format of the report's tables.
"""

from __future__ import annotations

import math
from typing import Any

from icu_tasks.continual.bootstrap import FORGET_VIEWS
from icu_tasks.report.training import training_markdown

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


def fmt(x: float | None, digits: int = 3) -> str:
    """A table cell: ``x`` with ``digits`` decimals, ``n/a`` for None or NaN."""
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def report_markdown(summaries: list[dict[str, Any]], metric: str, first_task_png: str) -> str:
    """The whole ``report.md`` (without the likelihood section) for the runs' summaries."""
    out = ["# ICU-Bench continual unlearning report", "", f"Accuracy metric: `{metric}`.", ""]
    out += _overview(summaries)
    out += ["", "n/a: undefined or not scored; the reason is in the run's notes below.", ""]
    out += ["## Definitions", "", DEFINITIONS, ""]
    out += ["## First task across stages", "", f"![first task]({first_task_png})", ""]
    for s in summaries:
        out += _run_facts(s)
        out += _md_views(s)
        for view in FORGET_VIEWS:
            out += _md_matrix(s["forget"][view], (s["intervals"] or {}).get("forget", {}).get(view), view)
        out += _stage_table(s)
        out += training_markdown(s.get("training"))
        out += [f"![{key}]({name})" for key, name in s["figures"].items()] + [""]
    return "\n".join(out)


def _overview(summaries: list[dict[str, Any]]) -> list[str]:
    """The table of every run's headline metrics, one row per run."""
    header = (
        ["run", "method", "stages scored"] + [h for _, h in COLUMNS] + ["worst stage", "fluency 0 → last"]
    )
    out = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for s in summaries:
        m = s["metrics"]
        scored = f"{len([k for k in s['scored_stages'] if k > 0])}/{s['stages']}"
        if 0 not in s["scored_stages"]:
            scored += " (no stage 0)"
        row = [s["name"], s["method"], scored] + [fmt(m[key]) for key, _ in COLUMNS]
        row.append(
            "n/a" if m["worst_stage"] is None else f"{m['worst_stage']} (Δ {fmt(m['worst_stage_swing'])})"
        )
        row.append(f"{fmt(m['fluency_stage0'], 2)} → {fmt(m['fluency_final'], 2)}")
        out.append("| " + " | ".join(row) + " |")
    return out


def _run_facts(s: dict[str, Any]) -> list[str]:
    """A run's heading and its facts: path, stages, schedule, base rate, unscored cells, notes."""
    out = [f"## {s['name']} ({s['method']})", "", f"- path: `{s['path']}`"]
    out.append(
        f"- stages: {s['stages']}; scored: {s['scored_stages'] or 'none'}; missing: {s['missing_stages'] or 'none'}"
    )
    out.append(f"- evaluation schedule: {s['schedule']['description']}")
    rates = ", ".join(f"{view} {fmt(b)}" for view, b in s["base_rate"].items())
    out.append(f"- base rate B[0] (vanilla accuracy on never-seen holdout profiles): {rates}")
    out += [f"- {_missing_line(view, c)}" for view, c in s["missing_cells"].items()]
    grouped: dict[str, list[str]] = {}
    for key, texts in s["metric_notes"].items():
        for text in texts:
            grouped.setdefault(text, []).append(key)
    notes = list(s["notes"]) + [f"{', '.join(keys)}: {text}" for text, keys in grouped.items()]
    return out + [f"- note: {n}" for n in notes] + [""]


def _stage_table(s: dict[str, Any]) -> list[str]:
    """The per-stage table of a run: retain, utility, RU_k with intervals, long-form rows, samples."""
    out = [
        "| k | retain | retain VQA | retain QA | utility | RU_k | fluency | rep | leak F | leak R | samples |",
        "|---" * 11 + "|",
    ]
    ps, ci = s["per_stage"], s["intervals"] or {}
    for k in range(s["stages"] + 1):
        cells = [_with_ci(ps["retain"][k], ci["retain"][k] if ci else None)]
        cells += [fmt(ps[key][k]) for key in ("retain_vqa", "retain_qa")]
        cells += [_with_ci(ps[key][k], ci[key][k] if ci else None) for key in ("utility", "ru")]
        for row, digits in LONGFORM_CELLS:
            values = ps.get(f"longform_{row}")
            cells.append(fmt(values[k] if values else None, digits))
        out.append(f"| {k} | " + " | ".join(cells) + f" | {ps['n_samples'][k]} |")
    return out + [""]


def _with_ci(x: float | None, ci: list[float] | None, digits: int = 3) -> str:
    text = fmt(x, digits)
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
    for view in FORGET_VIEWS:
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
