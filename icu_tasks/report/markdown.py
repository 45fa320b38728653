"""``report.md``: the text of the continual report, rendered from the runs' summaries.

:func:`report_markdown` renders what :func:`icu_tasks.report.summary.run_summary` computed (the overview
table, the definitions, and per run its facts, notes, per-view metrics, forget matrices and per-stage tables);
every table iterates the registry (:mod:`icu_tasks.continual.registry`) and computes nothing itself.
:func:`fmt` is the one number format of the report's tables.
"""

from __future__ import annotations

import math
from typing import Any

from icu_tasks.continual.registry import FAMILIES, METRICS, OVERVIEW, SERIES, Series, by_name, header
from icu_tasks.continual.series import EXTERNAL_UTILITY, GROUPS, POOLED
from icu_tasks.report.training import training_markdown

#: Forget-matrix columns shown in report.md (report.json always has the full matrix).
MD_MAX_TASKS = 20
#: Series of the per-stage accuracy / long-form table, and of the likelihood / membership table (pooled).
STAGE_SERIES: tuple[str, ...] = (
    "retain", "retain_vqa", "retain_qa", "utility", "ru",
    "fluency", "repetition", "leak_requested", "leak_pending", "leak_retain",
)  # fmt: skip
LIKELIHOOD_SERIES: tuple[str, ...] = tuple(
    s.name for s in SERIES if s.group == POOLED and s.table in ("likelihood", "mia")
)
INTRO = """\
- A[k][j] = forget accuracy on task j after stage k (k = 0: the vanilla model); B[0] = the vanilla model's
  accuracy on never-seen holdout profiles (the base rate; 0 when no holdout split was scored); R[k] retain-eval
  and U[k] utility accuracy. Tasks j ≤ k are *requested* by stage k, tasks j > k not yet.
- **f[k][j]** (normalised forgetting) = clip((A[0][j] − A[k][j]) / (A[0][j] − B[0]), 0, 1); a task with
  A[0][j] − B[0] < 0.1 is excluded (see notes). R[0] or U[0] below 0.1 leaves that ratio out of RU.
- Membership inference, privacy and forget quality use the requested tasks' items (at stage 0: every task the
  run will forget, the vanilla reference); privacy = 1 − 2·|AUC − 0.5| (1 = like never seen, 0 = identifiable
  in either direction)."""
OUTRO = """\
- `x [lo, hi]`: bootstrap 95% percentile interval; profiles (the questions about one person) are resampled
  within their forget task / split, with one draw shared by every stage and cell, so differences between
  stages stay paired (seeded). An interval that missed its point estimate is extended to it and listed in
  report.json (`intervals.extended_to_point`).
- A stage that was not scored is a row of NaN, a cell the schedule did not score is NaN: both are left out of
  every mean (never imputed) and counted in each run's notes. Every formula: docs/metrics.md."""


def fmt(x: float | None, digits: int = 3) -> str:
    """A table cell: ``x`` with ``digits`` decimals, ``n/a`` for None or NaN."""
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def definitions() -> str:
    """The report's definitions: the conventions, one line per metric family and per series, the intervals."""
    lines = [INTRO]
    seen = set()
    for m in METRICS:
        if m.family not in seen and m.group in (None, POOLED):
            seen.add(m.family)
            lines.append(f"- **{m.label}** {m.direction}: {m.doc}")
    lines += [
        f"- **{s.label}** {s.direction} (per stage): {s.doc}" for s in SERIES if s.group in (None, POOLED)
    ]
    return "\n".join(lines + [OUTRO])


def report_markdown(summaries: list[dict[str, Any]], metric: str, first_task_png: str) -> str:
    """The whole ``report.md`` (without the likelihood section) for the runs' summaries."""
    out = ["# ICU-Bench continual unlearning report", "", f"Accuracy metric: `{metric}`.", ""]
    out += _overview(summaries)
    out += ["", "n/a: undefined or not scored; the reason is in the run's notes below.", ""]
    out += ["## Definitions", "", definitions(), ""]
    out += ["## First task across stages", "", f"![first task]({first_task_png})", ""]
    for s in summaries:
        out += _run_facts(s)
        out += _md_views(s)
        for group in GROUPS:
            out += _md_matrix(s["forget"][group], (s["intervals"] or {}).get("forget", {}).get(group), group)
        out += _stage_table(s, STAGE_SERIES)
        out += _external_table(s)
        if any(v is not None for name in LIKELIHOOD_SERIES for v in s["per_stage"][name]):
            out += ["Probability, truth ratio, forget quality and membership inference, both views:", ""]
            out += _stage_table(s, LIKELIHOOD_SERIES, samples=False)
        out += training_markdown(s.get("training"))
        out += [f"![{key}]({name})" for key, name in s["figures"].items()] + [""]
    return "\n".join(out)


def _overview(summaries: list[dict[str, Any]]) -> list[str]:
    """The table of every run's headline metrics, one row per run."""
    head = ["run", "method", "stages scored", *(header(m) for m in OVERVIEW), "headline", "fluency 0 → last"]
    out = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for s in summaries:
        m = s["metrics"]
        scored = f"{len([k for k in s['scored_stages'] if k > 0])}/{s['stages']}"
        if 0 not in s["scored_stages"]:
            scored += " (no stage 0)"
        cells = []
        for metric in OVERVIEW:
            stage = m.get(f"{metric.name}_stage") if metric.name == "ru_max_drop" else None
            cells.append(fmt(m[metric.name]) + (f" (stage {stage})" if stage is not None else ""))
        row = [s["name"], s["method"], scored, *cells, s["headline"]["formula"]]
        row.append(f"{fmt(m['fluency_stage0'], 2)} → {fmt(m['fluency_final'], 2)}")
        out.append("| " + " | ".join(row) + " |")
    return out


def _run_facts(s: dict[str, Any]) -> list[str]:
    """A run's heading and its facts: path, stages, schedule, base rate, unscored cells, headline, notes."""
    out = [f"## {s['name']} ({s['method']})", "", f"- path: `{s['path']}`"]
    out.append(
        f"- stages: {s['stages']}; scored: {s['scored_stages'] or 'none'}; missing: {s['missing_stages'] or 'none'}"
    )
    out.append(f"- evaluation schedule: {s['schedule']['description']}")
    rates = ", ".join(f"{view} {fmt(b)}" for view, b in s["base_rate"].items())
    out.append(f"- base rate B[0] (vanilla accuracy on never-seen holdout profiles): {rates}")
    out.append(f"- headline ICU = {s['headline']['formula']}: {s['headline']['why']}")
    out += [f"- {_missing_line(view, c)}" for view, c in s["missing_cells"].items()]
    grouped: dict[str, list[str]] = {}
    for key, texts in s["metric_notes"].items():
        for text in texts:
            grouped.setdefault(text, []).append(key)
    notes = list(s["notes"]) + [f"{', '.join(keys)}: {text}" for text, keys in grouped.items()]
    return out + [f"- note: {n}" for n in notes] + [""]


def _stage_table(s: dict[str, Any], names: tuple[str, ...], samples: bool = True) -> list[str]:
    """A per-stage table of registered series (with intervals), one row per stage."""
    series: list[Series] = [next(x for x in SERIES if x.name == n) for n in names]
    head = ["k", *(f"{x.label} {x.direction}".strip() for x in series)] + (["samples"] if samples else [])
    out = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    ps, ci = s["per_stage"], (s["intervals"] or {}).get("series", {})
    for k in range(s["stages"] + 1):
        cells = [_with_ci(ps[x.name][k], ci[x.name][k] if x.name in ci else None) for x in series]
        tail = [str(ps["n_samples"][k])] if samples else []
        out.append(f"| {k} | " + " | ".join(cells + tail) + " |")
    return out + [""]


def _external_table(s: dict[str, Any]) -> list[str]:
    """External utility tasks per stage (their own metric; each enters RU divided by its stage-0 value)."""
    names = [n for n in s["per_stage"] if n.startswith(EXTERNAL_UTILITY)]
    if not names:
        return []
    head = ["k", *(f"{n.removeprefix(EXTERNAL_UTILITY)} ↑" for n in names)]
    out = ["External utility tasks (in RU's utility term, each over its stage-0 value):", ""]
    out += ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for k in range(s["stages"] + 1):
        out.append(f"| {k} | " + " | ".join(fmt(s["per_stage"][n][k]) for n in names) + " |")
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
    """The per-view metrics of one run with their intervals, and the run-level metrics."""
    m, ci = s["metrics"], (s["intervals"] or {}).get("metrics", {})
    families = [by_name(f"{family}_{POOLED}") for family in FAMILIES]
    lines = [
        "| view | " + " | ".join(f"{x.label} {x.direction}".strip() for x in families) + " |",
        "|---" * (len(families) + 1) + "|",
    ]
    for group in GROUPS:
        keys = [f"{family}_{group}" for family in FAMILIES]
        lines.append(f"| {group} | " + " | ".join(_with_ci(m[key], ci.get(key)) for key in keys) + " |")
    run_level = [x for x in METRICS if x.group is None and x.name != "icu"]
    text = ", ".join(f"{header(x)} {_with_ci(m[x.name], ci.get(x.name))}" for x in run_level)
    where = f"RU final from stage {m.get('ru_final_stage')}"
    if m.get("ru_max_drop_stage") is not None:
        where += f"; largest RU drop into stage {m['ru_max_drop_stage']}"
    return lines + ["", f"{text} ({where})", ""]


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
