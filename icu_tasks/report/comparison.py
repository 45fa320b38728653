"""Methods compared over seeds: the aggregate of per-run headline metrics, and its markdown.

Input: entries ``{"method", "seed", "metrics"}`` (one per run; ``metrics`` from
:func:`icu_tasks.report.headline.headline_metrics`). :func:`aggregate` gives per method and metric the mean
and seed-level interval, the paired differences of every pair of methods, and per metric a ranking that
lists ties (:mod:`icu_tasks.continual.seeds`); :func:`comparison_markdown` renders it.
"""

from __future__ import annotations

import math
from typing import Any

from icu_tasks.continual import seeds as sd
from icu_tasks.report.headline import HEADLINE, LABELS, PAIRED, PRIMARY


def by_method(entries: list[dict[str, Any]], metric: str) -> dict[str, dict[int, float | None]]:
    """``{method: {seed: value}}`` of one metric, methods in first-seen order."""
    out: dict[str, dict[int, float | None]] = {}
    for e in entries:
        out.setdefault(e["method"], {})[int(e["seed"])] = e["metrics"].get(metric)
    return out


def draws_by_method(entries: list[dict[str, Any]], metric: str) -> dict[str, dict[int, tuple[str, Any]]]:
    """``{method: {seed: (units fingerprint, draws)}}`` of one metric, from the entries that carry draws."""
    out: dict[str, dict[int, tuple[str, Any]]] = {}
    for e in entries:
        d = e.get("draws") or {}
        values = (d.get("metrics") or {}).get(metric)
        if values is not None:
            key = f"{d.get('units')}/{d.get('n')}/{d.get('seed')}"
            out.setdefault(e["method"], {})[int(e["seed"])] = (
                key,
                [math.nan if v is None else v for v in values],
            )
    return out


def _by_profiles(entries: list[dict[str, Any]], level: float) -> dict[str, Any]:
    """Paired-over-profiles differences and rankings of the :data:`PAIRED` metrics (empty without draws)."""
    paired: dict[str, list[dict[str, Any]]] = {}
    ranking: dict[str, list[dict[str, Any]]] = {}
    for metric in PAIRED:
        values, draws = by_method(entries, metric), draws_by_method(entries, metric)
        if not draws:
            continue

        def diff(a: str, b: str, values=values, draws=draws) -> sd.Interval:
            return sd.profile_paired_difference(
                values[a], values[b], draws.get(a, {}), draws.get(b, {}), level
            )

        names = list(values)
        paired[metric] = [
            {"a": a, "b": b, **(d := diff(a, b)).to_json(), "tie": d.contains_zero()}
            for i, a in enumerate(names)
            for b in names[i + 1 :]
        ]
        ranking[metric] = [
            r.to_json() for r in sd.rank_methods(values, HEADLINE[metric], level, difference=diff)
        ]
    return {"paired": paired, "ranking": ranking} if paired else {}


def aggregate(entries: list[dict[str, Any]], level: float = sd.LEVEL) -> dict[str, Any]:
    """Means with seed-level intervals, paired differences and rankings of every headline metric, and (where
    the entries carry bootstrap draws) differences and rankings paired over profiles within seeds."""
    methods = list(by_method(entries, PRIMARY))
    seeds = sorted({int(e["seed"]) for e in entries})
    summary: dict[str, dict[str, Any]] = {m: {} for m in methods}
    paired: dict[str, list[dict[str, Any]]] = {}
    ranking: dict[str, list[dict[str, Any]]] = {}
    for metric, higher in HEADLINE.items():
        values = by_method(entries, metric)
        for m in methods:
            summary[m][metric] = sd.seed_interval(values.get(m, {}), level).to_json()
        paired[metric] = [
            {"a": a, "b": b, **d.to_json(), "tie": d.contains_zero()}
            for a, b, d in sd.pairwise_differences(values, level)
        ]
        ranking[metric] = [row.to_json() for row in sd.rank_methods(values, higher, level)]
    return {
        "level": level,
        "interval": "Student-t over seeds (scipy.stats.t); differences paired over seeds",
        "seeds": seeds,
        "methods": methods,
        "higher_is_better": dict(HEADLINE),
        "primary": PRIMARY,
        "summary": summary,
        "paired": paired,
        "ranking": ranking,
        "by_profiles": _by_profiles(entries, level),
    }


def _num(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def cell(stat: dict[str, Any], spec: str = ".3f") -> str:
    """``mean [lo, hi]`` (``mean`` alone when the interval is undefined), each formatted with ``spec``."""
    text = _num(stat["mean"], spec)
    if stat.get("lo") is None or text == "n/a":
        return text
    return f"{text} [{_num(stat['lo'], spec)}, {_num(stat['hi'], spec)}]"


def _spec(metric: str) -> str:
    """Format of a metric's cells: whole steps; forget quality (a p-value, often far below 0.001) in
    scientific notation; three decimals otherwise."""
    if metric == "steps_total":
        return ".0f"
    return ".1e" if metric.startswith("forget_quality") else ".3f"


def ranking_table(agg: dict[str, Any], metric: str) -> list[str]:
    """The ranking of one metric: rank, method, mean [interval], seeds, significantly better, tied with."""
    arrow = "↑" if agg["higher_is_better"][metric] else "↓"
    out = [
        f"| rank | method | {LABELS.get(metric, metric)} {arrow} | seeds | beaten by | tied with |",
        "|---" * 6 + "|",
    ]
    for row in agg["ranking"][metric]:
        tied = ", ".join(row["tied_with"]) or "—"
        beaten = ", ".join(row["beaten_by"]) or "—"
        out.append(
            f"| {row['rank']} | {row['method']} | {cell(row, _spec(metric))} | {row['n']} | {beaten} | {tied} |"
        )
    return out


def comparison_markdown(agg: dict[str, Any], title: str = "Method comparison over seeds") -> str:
    """The whole comparison: the ranking on the primary metric, every metric's means, the paired differences."""
    level = int(round(agg["level"] * 100))
    seeds = ", ".join(map(str, agg["seeds"]))
    out = [f"# {title}", "", f"Seeds: {seeds} ({len(agg['seeds'])}). `x [lo, hi]`: mean over seeds and its "
           f"{level} % Student-t interval; differences are paired over seeds. A method's rank is 1 + the number "
           "of methods whose paired difference with it excludes 0 in their favour; *tied with* lists the "
           "methods whose paired interval contains 0 (or is undefined: fewer than 2 common seeds).", ""]  # fmt: skip
    primary = agg["primary"]
    out += [f"## Ranking by {LABELS.get(primary, primary)}", "", *ranking_table(agg, primary), ""]
    # HEADLINE's order (a comparison.json read back has its keys sorted); then any metric it does not know
    metrics = [m for m in HEADLINE if m in agg["higher_is_better"]]
    metrics += [m for m in agg["higher_is_better"] if m not in HEADLINE]
    out += ["## Every headline metric (mean [interval] over seeds)", ""]
    out.append("| method | " + " | ".join(
        f"{LABELS.get(m, m)} {'↑' if agg['higher_is_better'][m] else '↓'}" for m in metrics) + " |")  # fmt: skip
    out.append("|---" * (len(metrics) + 1) + "|")
    for method in agg["methods"]:
        stats = agg["summary"][method]
        out.append(f"| {method} | " + " | ".join(cell(stats[m], _spec(m)) for m in metrics) + " |")
    out += ["", f"## Paired differences, {LABELS.get(primary, primary)} (a − b over common seeds)", ""]
    out += [
        "| a | b | a − b | seeds | tie |",
        "|---" * 5 + "|",
        *_difference_rows(agg["paired"][primary], primary),
    ]
    out += _profiles_markdown(agg)
    for metric in metrics:
        if metric != primary:
            out += ["", f"## Ranking by {LABELS.get(metric, metric)}", "", *ranking_table(agg, metric)]
    return "\n".join(out) + "\n"


def _profiles_markdown(agg: dict[str, Any]) -> list[str]:
    """The primary metric ranked and differenced paired over profiles within seeds (when draws exist)."""
    prof = agg.get("by_profiles") or {}
    primary = agg["primary"]
    if primary not in prof.get("ranking", {}):
        return []
    label = LABELS.get(primary, primary)
    out = ["", f"## Ranking by {label}, paired over profiles within seeds", "",
           "The same people resampled in both methods' runs of a seed (profile bootstrap), averaged over seeds: "
           "conditional on these seeds, so narrower than the seed-level interval above.", ""]  # fmt: skip
    out += ranking_table({**agg, "ranking": prof["ranking"]}, primary)
    out += ["", "| a | b | a − b (profiles) | seeds | tie |", "|---" * 5 + "|"]
    return out + _difference_rows(prof["paired"][primary], primary)


def _difference_rows(diffs: list[dict[str, Any]], metric: str) -> list[str]:
    return [
        f"| {d['a']} | {d['b']} | {cell(d, _spec(metric))} | {d['n']} | {'yes' if d['tie'] else 'no'} |"
        for d in diffs
    ]
