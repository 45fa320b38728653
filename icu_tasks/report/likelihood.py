"""Per-stage probability, truth ratio and membership inference of a run, from the ``icu_ll`` / ``icu_mia`` samples.

Reads the same lmms-eval samples files as :mod:`icu_tasks.report.results` (through
:func:`~icu_tasks.report.samples.stage_records`) and keeps the payloads of the likelihood tasks
(:mod:`icu_tasks.harness.likelihood`: key ``answer_prob``) and of the membership-inference tasks (:mod:`icu_tasks.harness.mia`:
key ``mia_auc_loss``). Per stage k (0 = vanilla), per view (``vqa``, ``qa``) and pooled over both views:

* ``forget_prob[k][j-1]``: mean answer probability P on forget task j;
* ``forget_truth_ratio[k][j-1]``: TOFU's forget statistic ``mean(min(R, 1/R))`` on task j (1 = the truth no
  more likely than wrong values);
* ``mia_auc_loss[k][j-1]`` / ``mia_auc_zlib[k][j-1]``: AUC of telling task j's items from the holdout items
  (all of the view's holdout docs) by LOSS / zlib score (1 = memorised, 0.5 = like never seen, near 0 = as
  identifiable, by being less likely; privacy folds both sides, :mod:`icu_tasks.continual.privacy`);
* ``retain_prob``, ``retain_truth_ratio`` (``mean(max(0, 1 - R))``), ``holdout_prob``, ``utility_prob`` and
  ``mia_auc_loss_all`` / ``mia_auc_zlib_all`` (every forget task pooled) per stage.

The "task k / earlier tasks" rows of the report pool the items of task k, and of tasks j < k, after stage k.
Everything is NaN (``None`` in JSON) where nothing was scored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from icu_tasks.data.schema import VIEWS
from icu_tasks.harness.likelihood import truth_ratio_statistic
from icu_tasks.harness.mia import auc_lower_is_member
from icu_tasks.report.markdown import fmt
from icu_tasks.report.results import EVAL_DIR
from icu_tasks.report.samples import stage_records
from icu_tasks.report.summary import json_number

POOLED = "pooled"
#: The per-view groups of every summary: each view, and both views' items together.
GROUPS: tuple[str, ...] = (*VIEWS, POOLED)
_LL_KEY, _MIA_KEY = "answer_prob", "mia_auc_loss"
_MIA_SCORES = {"loss": "loss", "zlib": "zlib_loss"}
_STAGE_DIR = re.compile(r"^stage_(\d+)$")


def _eval_stages(root: Path) -> list[int]:
    folder = root / EVAL_DIR
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if p.is_dir() and (m := _STAGE_DIR.match(p.name)))


def stage_items(stage_eval_dir: Path) -> tuple[list[dict], list[dict]]:
    """(likelihood payloads, membership payloads) of one stage's eval dir (empty lists when none)."""
    records, _, _ = stage_records(stage_eval_dir)
    ll = [rec[_LL_KEY] for rec in records if isinstance(rec.get(_LL_KEY), dict)]
    mia = [rec[_MIA_KEY] for rec in records if isinstance(rec.get(_MIA_KEY), dict)]
    return ll, mia


def _in_group(item: dict, group: str) -> bool:
    return group == POOLED or item.get("view") == group


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def _forget_of(items: Iterable[dict], tasks: set[int]) -> list[dict]:
    return [i for i in items if i.get("split") == "forget" and int(i.get("forget_task") or 0) in tasks]


def _split_means(ll: list[dict], split: str) -> tuple[float, float]:
    """(mean P, TOFU truth-ratio statistic) of the likelihood items of one split."""
    items = [i for i in ll if i.get("split") == split]
    return _mean([i["answer_prob"] for i in items]), truth_ratio_statistic(
        [i["truth_ratio"] for i in items], split
    )


def _auc(mia: list[dict], tasks: set[int], score: str) -> float:
    members = [float(i[score]) for i in _forget_of(mia, tasks) if int(i["member"]) == 1]
    others = [float(i[score]) for i in mia if int(i["member"]) == 0]
    return auc_lower_is_member(members, others)


def stage_summary(ll: list[dict], mia: list[dict], tasks: int, stage: int) -> dict[str, Any]:
    """The numbers of one stage for one group's items (see the module docstring)."""
    out: dict[str, Any] = {}
    per_task = [_forget_of(ll, {j}) for j in range(1, tasks + 1)]  # likelihood items per forget task
    out["forget_prob"] = [json_number(_mean([i["answer_prob"] for i in items])) for items in per_task]
    out["forget_truth_ratio"] = [
        json_number(truth_ratio_statistic([i["truth_ratio"] for i in items], "forget")) for items in per_task
    ]
    for name, score in _MIA_SCORES.items():
        out[f"mia_auc_{name}"] = [json_number(_auc(mia, {j}, score)) for j in range(1, tasks + 1)]
        out[f"mia_auc_{name}_all"] = json_number(_auc(mia, set(range(1, tasks + 1)), score))
    for split, key in (("retain_eval", "retain"), ("holdout", "holdout"), ("utility", "utility")):
        prob, ratio = _split_means(ll, split)
        out[f"{key}_prob"], out[f"{key}_truth_ratio"] = json_number(prob), json_number(ratio)
    # task k (this stage's) and the earlier tasks j < k, items pooled
    current, earlier = {stage}, set(range(1, stage))
    for label, chosen in (("task_k", current), ("earlier", earlier)):
        items = _forget_of(ll, chosen) if stage >= 1 else []
        out[f"{label}_prob"] = json_number(_mean([i["answer_prob"] for i in items]))
        out[f"{label}_truth_ratio"] = json_number(
            truth_ratio_statistic([i["truth_ratio"] for i in items], "forget")
        )
        for name, score in _MIA_SCORES.items():
            out[f"{label}_mia_auc_{name}"] = json_number(_auc(mia, chosen, score)) if stage >= 1 else None
    out["n_items"] = len(ll) + len(mia)
    return out


def likelihood_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """Per stage and group (``vqa``, ``qa``, ``pooled``) the numbers above for a run dir; None if no stage
    has ``icu_ll`` / ``icu_mia`` samples. ``stages[k][group]`` is :func:`stage_summary` of stage k."""
    root = Path(run_dir)
    eval_stages = _eval_stages(root)
    items = {k: stage_items(root / EVAL_DIR / f"stage_{k}") for k in eval_stages}
    if not any(ll or mia for ll, mia in items.values()):
        return None
    tasks = max([int(i.get("forget_task") or 0) for ll, mia in items.values() for i in (*ll, *mia)] + [0])
    T = max(eval_stages)
    stages: list[dict[str, Any] | None] = []
    for k in range(T + 1):
        ll, mia = items.get(k, ([], []))
        if not (ll or mia):
            stages.append(None)
            continue
        stages.append(
            {
                g: stage_summary(
                    [i for i in ll if _in_group(i, g)], [i for i in mia if _in_group(i, g)], tasks, k
                )
                for g in GROUPS
            }
        )
    return {"tasks": tasks, "stages": stages}


#: (key in :func:`stage_summary`, header) of the report.md table.
MD_COLUMNS: tuple[tuple[str, str], ...] = (
    ("task1_prob", "P task 1"),
    ("task1_truth_ratio", "TR task 1"),
    ("task1_mia_auc_loss", "AUC LOSS task 1"),
    ("task1_mia_auc_zlib", "AUC zlib task 1"),
    ("task_k_prob", "P task k"),
    ("earlier_prob", "P tasks < k"),
    ("task_k_truth_ratio", "TR task k"),
    ("earlier_truth_ratio", "TR tasks < k"),
    ("task_k_mia_auc_loss", "AUC LOSS task k"),
    ("earlier_mia_auc_loss", "AUC LOSS tasks < k"),
    ("task_k_mia_auc_zlib", "AUC zlib task k"),
    ("earlier_mia_auc_zlib", "AUC zlib tasks < k"),
    ("retain_prob", "P retain"),
    ("retain_truth_ratio", "TR retain"),
    ("holdout_prob", "P holdout"),
)


def likelihood_markdown(name: str, summary: dict[str, Any] | None, group: str = POOLED) -> list[str]:
    """The report.md section of one run: one row per scored stage (``group``'s items)."""
    if summary is None:
        return []
    out = [
        f"### {name}: probability, truth ratio, membership inference ({group})",
        "",
        "P = exp(−mean answer-token NLL), answer tokens + end-of-turn; TR = TOFU truth-ratio statistic "
        "(forget: mean min(R, 1/R), 1 = forgotten; retain: mean max(0, 1 − R), 1 = kept); AUC = forget items "
        "vs never-seen holdout items (0.5 = like never seen; 1 = memorised; near 0 = marked by being *less* "
        "likely than a stranger's answer, as identifiable as near 1). Point values per task; the per-stage "
        "table above has the requested tasks' numbers with intervals.",
        "",
        "| k | " + " | ".join(h for _, h in MD_COLUMNS) + " |",
        "|---" * (len(MD_COLUMNS) + 1) + "|",
    ]
    for k, stage in enumerate(summary["stages"]):
        if stage is None:
            continue
        s = dict(stage[group])
        for key in ("prob", "truth_ratio", "mia_auc_loss", "mia_auc_zlib"):
            per_task = s[f"forget_{key}" if key in ("prob", "truth_ratio") else key]
            s[f"task1_{key}"] = per_task[0] if per_task else None
        out.append(f"| {k} | " + " | ".join(fmt(s[key]) for key, _ in MD_COLUMNS) + " |")
    return out + [""]


#: Task-1 curves of :func:`likelihood_curves`: (key in :func:`stage_summary`, index into it or None, label).
CURVES: tuple[tuple[str, int | None, str], ...] = (
    ("forget_prob", 0, "P task 1"),
    ("forget_truth_ratio", 0, "truth ratio task 1 (min(R, 1/R))"),
    ("mia_auc_loss", 0, "MIA AUC LOSS task 1"),
    ("mia_auc_zlib", 0, "MIA AUC zlib task 1"),
    ("retain_prob", None, "P retain"),
)


def likelihood_curves(summary: dict[str, Any], path: str | Path, title: str) -> Path:
    """PNG: per group (VQA, QA, pooled; one panel each) the task-1 probability, truth ratio and MIA AUCs and the
    retain probability after each stage (a missing value leaves a gap)."""
    from icu_tasks.report import plots

    fig = plots.new_figure(plots.FIRST_TASK_SIZE)
    axes = fig.subplots(1, len(GROUPS), squeeze=False)[0]
    n = len(summary["stages"])
    for ax, group in zip(axes, GROUPS, strict=True):
        for i, (key, index, label) in enumerate(CURVES):
            y = []
            for stage in summary["stages"]:
                value = None if stage is None else stage[group][key]
                value = value[index] if index is not None and value is not None else value
                y.append(math.nan if value is None else value)
            ax.plot(range(n), y, plots.MARKERS[i % len(plots.MARKERS)] + "-", label=label, alpha=0.85)
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")  # AUC of a model that never saw the profiles
        plots.stage_axis(ax, n)
        ax.set_title(group if group == POOLED else group.upper())
        ax.grid(alpha=0.3)
    axes[0].legend(loc="best", fontsize=7)
    fig.suptitle(title)
    return plots.save(fig, Path(path))
