"""The headline metrics of one run, read from its ``report.json`` summary: the one place that names them.

Seed aggregation, method comparison and the leaderboard (:mod:`icu_tasks.report.comparison`,
:mod:`icu_tasks.report.leaderboard`) read a run's numbers only through :func:`headline_metrics`, so a renamed or
added metric in the run summary is a change here alone.
"""

from __future__ import annotations

from typing import Any

#: Headline metric → whether higher is better, in table order. ``steps_total`` is the optimizer steps of all
#: stages (under ``--until-forgotten``: what reaching the target cost).
HEADLINE: dict[str, bool] = {
    "icu": True,
    "fe_pooled": True,
    "hfp_pooled": True,
    "rebound_pooled": False,
    "collateral_pooled": False,
    "over_forgetting_pooled": False,
    "ru": True,
    "ru_final": True,
    "ru_max_drop": False,
    "privacy_pooled": True,
    "forget_quality_pooled": True,
    "fe_vqa": True,
    "fe_qa": True,
    "hfp_vqa": True,
    "hfp_qa": True,
    "collateral_vqa": False,
    "collateral_qa": False,
    "steps_total": False,
}
#: The metric the ranking is headed by.
PRIMARY = "icu"
#: The metrics whose bootstrap draws a leaderboard entry keeps, for differences paired over profiles.
PAIRED: tuple[str, ...] = (
    "icu",
    "fe_pooled",
    "hfp_pooled",
    "collateral_pooled",
    "ru_final",
    "privacy_pooled",
)
#: Short labels for tables.
LABELS: dict[str, str] = {
    "icu": "ICU",
    "fe_pooled": "FE",
    "hfp_pooled": "HFP",
    "rebound_pooled": "rebound",
    "collateral_pooled": "collateral",
    "over_forgetting_pooled": "over-forgetting",
    "ru": "RU",
    "ru_final": "RU final",
    "ru_max_drop": "largest RU drop",
    "privacy_pooled": "privacy",
    "forget_quality_pooled": "forget quality",
    "fe_vqa": "FE VQA",
    "fe_qa": "FE QA",
    "hfp_vqa": "HFP VQA",
    "hfp_qa": "HFP QA",
    "collateral_vqa": "collateral VQA",
    "collateral_qa": "collateral QA",
    "steps_total": "steps",
}


def headline_metrics(summary: dict[str, Any]) -> dict[str, float | None]:
    """The :data:`HEADLINE` metrics of one run summary (an entry of ``report.json``'s ``runs``); None where the
    summary has no value."""
    metrics = summary.get("metrics") or {}
    out: dict[str, float | None] = {key: metrics.get(key) for key in HEADLINE if key != "steps_total"}
    out["steps_total"] = (summary.get("training") or {}).get("steps_total")
    return {key: out[key] for key in HEADLINE}
