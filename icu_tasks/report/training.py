"""What each unlearning stage of a run cost: optimizer steps, seconds and the stop rule's outcome.

Read from ``RUN/stage_K/stage.json`` (written by ``icu_unlearn``): ``steps`` (optimizer steps run),
``train_seconds`` and, for a stage trained with ``--until-forgotten``, ``stop_rule`` (target, whether it was
met, the normalised forgetting reached and the step budget). :func:`stage_training` is the ``training`` entry of
a run in ``report.json``; :func:`training_markdown` its table in ``report.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from icu_tasks.records import layout
from icu_tasks.records.files import read_record

#: The fields of a stage's ``stop_rule`` record that the report keeps.
RULE_FIELDS = ("target", "met", "value", "steps", "budget", "note")


def stage_training(root: str | Path, stages: int) -> dict[str, Any]:
    """Per stage 1..T (``None`` for a stage without a complete ``stage.json``): ``{"steps", "seconds",
    "stop_rule"}``; plus the total steps and, under a stop rule, its target and how many stages met it."""
    per_stage: list[dict[str, Any] | None] = []
    for k in range(1, stages + 1):
        path = layout.stage_dir(Path(root), k) / layout.STAGE_JSON
        if not path.is_file():
            per_stage.append(None)
            continue
        record = read_record(path)
        rule = record.get("stop_rule")
        per_stage.append(
            {
                "steps": record.get("steps"),
                "seconds": record.get("train_seconds"),
                "stop_rule": {key: rule.get(key) for key in RULE_FIELDS} if rule else None,
            }
        )
    done = [s for s in per_stage if s is not None]
    rules = [s["stop_rule"] for s in done if s["stop_rule"]]
    return {
        "per_stage": per_stage,
        "steps_total": sum(int(s["steps"] or 0) for s in done),
        "target": rules[0]["target"] if rules else None,
        "stages_met": sum(bool(r["met"]) for r in rules) if rules else None,
        "stages_with_rule": len(rules),
    }


def training_markdown(training: dict[str, Any] | None) -> list[str]:
    """The per-stage steps table of a run (empty when no stage recorded its steps)."""
    rows = (training or {}).get("per_stage") or []
    if not any(rows):
        return []
    out = ["| k | steps | budget | forgetting reached | target met | train s |", "|---" * 6 + "|"]
    for k, s in enumerate(rows, start=1):
        if s is None:
            out.append(f"| {k} | n/a | | | | |")
            continue
        rule = s["stop_rule"] or {}
        value = rule.get("value")
        reached = "" if not rule else ("n/a" if value is None else f"{value:.3f}")
        met = "" if not rule else ("yes" if rule["met"] else "**no**")
        budget = rule.get("budget") or ""
        seconds = "" if s["seconds"] is None else f"{s['seconds']:.0f}"
        out.append(f"| {k} | {s['steps']} | {budget} | {reached} | {met} | {seconds} |")
    head = f"Steps per stage: {training['steps_total']} in total"
    if training["target"] is not None:
        head += (
            f"; stop rule: normalised forgetting ≥ {training['target']} (teacher-forced), met at "
            f"{training['stages_met']} of {training['stages_with_rule']} stages"
        )
    return [head + ".", "", *out, ""]
