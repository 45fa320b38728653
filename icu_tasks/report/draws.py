"""A run's bootstrap draws of the paired metrics: what a comparison paired over profiles within a seed needs.

Two runs of one seed score the same people; drawn with the same number of resamples and bootstrap seed, their
profile resamples coincide (:func:`icu_tasks.continual.bootstrap.metric_draws`), so the difference of two
methods can be resampled as a difference of the same people (:func:`icu_tasks.continual.seeds.
profile_paired_difference`). The draws of :data:`~icu_tasks.report.headline.PAIRED` are kept in the run's
``report/draws.json`` (recomputed when older than the run's report) and in its leaderboard entry.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from icu_tasks.continual.bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED, metric_draws, units_fingerprint
from icu_tasks.records import layout
from icu_tasks.report.headline import PAIRED

DRAWS_JSON = "draws.json"


def _round(x: float) -> float | None:
    return None if math.isnan(x) else round(float(x), 4)


def run_draws(
    run_dir: str | Path, n_boot: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> dict[str, Any]:
    """``{"n", "seed", "units", "metrics": {name: [value or None, ...]}}`` of a finished run, cached."""
    from icu_tasks.report.results import load_run  # the samples: read only when the cache is stale

    report = layout.report_dir(run_dir)
    path = report / DRAWS_JSON
    cached = _read(path)
    fresh = bool(cached) and (
        not (report / layout.REPORT_JSON).is_file()
        or path.stat().st_mtime >= (report / layout.REPORT_JSON).stat().st_mtime
    )
    if (
        fresh
        and cached.get("n") == n_boot
        and cached.get("seed") == seed
        and set(cached.get("metrics", {})) == set(PAIRED)
    ):
        return {k: cached[k] for k in ("n", "seed", "units", "metrics")}
    run = load_run(run_dir)
    draws = metric_draws(run.items, list(PAIRED), n_boot, seed)
    record = {
        "n": n_boot,
        "seed": seed,
        "units": units_fingerprint(run.items.units),
        "metrics": {name: [_round(v) for v in draws[name]] for name in PAIRED},
    }
    if report.is_dir():
        layout.atomic_write_json(path, record)
    return record


def _read(path: Path) -> dict[str, Any]:
    """The cached draws, or ``{}`` when absent or unreadable (then they are recomputed)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


__all__ = ["DRAWS_JSON", "run_draws"]
