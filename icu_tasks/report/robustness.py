"""The robustness table of a run: what its probes (``RUN/probes/``) undid of the forgetting, with intervals.

For every probed stage K (a ``RUN/probes/eval/stage_K/`` dir) one row: forget accuracy on the probed people
after unlearning, after the relearning attack, after benign relearning, and quantized (each scheme scored),
with the vanilla model's, and the recovery of each probe (:mod:`icu_tasks.continual.robustness`) with its
paired profile-bootstrap interval. Relearning is read on the attack's *unexposed* profiles (its ``stage.json``
names them); quantization on every profile of forget tasks 1..K. Once per run, the from-scratch control: the
holdout people's accuracy before and after the same attack from the vanilla model, on the unexposed half.

Per-sample scores come from lmms-eval's samples files (:mod:`icu_tasks.report.samples`); a profile's accuracy
is the mean over its scored questions (both views, the trained phrasing).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from icu_tasks.continual import robustness as rb
from icu_tasks.records import layout
from icu_tasks.records.files import read_record
from icu_tasks.report import plots
from icu_tasks.report.results import DEFAULT_METRIC
from icu_tasks.report.samples import is_paraphrase, score, stage_records

ROBUSTNESS_PNG = "robustness.png"
ROBUSTNESS_SIZE = (8.0, 4.0)  # inches → 800 × 400 px
#: Columns of a stage's row, in order: references, attacks, quantization.
ACCURACY_COLUMNS: tuple[str, ...] = (
    layout.VANILLA_PROBE,
    layout.UNLEARNED_PROBE,
    "relearn",
    "benign",
    *layout.QUANT_PROBES,
)


def profile_accuracy(eval_dir: Path, split: str, metric: str = DEFAULT_METRIC) -> dict[str, float]:
    """``{profile_id: mean score}`` of the ``split`` samples (forget, holdout…) in one evaluation dir."""
    records, _, _ = stage_records(eval_dir)
    scores: dict[str, list[float]] = defaultdict(list)
    for rec in records:
        got = None if is_paraphrase(rec) else score(rec, metric)
        if got is None or got[1] != split:
            continue
        payload = rec.get(metric) if isinstance(rec.get(metric), dict) else rec.get("doc") or {}
        if payload.get("profile_id") is not None:
            scores[str(payload["profile_id"])].append(got[0])
    return {p: float(np.mean(v)) for p, v in scores.items()}


def _attack_record(run_dir: Path, k: int, kind: str) -> dict[str, Any] | None:
    """The ``attack`` block of an attacked stage's ``stage.json`` (None when the attack was not run)."""
    return read_record(layout.probe_dir(run_dir, k, kind) / layout.STAGE_JSON).get("attack")


def _scored(run_dir: Path, k: int, split: str, metric: str) -> dict[str, dict[str, float]]:
    """Per-profile accuracies of every complete probe evaluation of stage ``k``."""
    out = {}
    root = layout.probe_eval_dir(run_dir, k, "")  # RUN/probes/eval/stage_K
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if path.is_dir() and any(path.rglob("*_results.json")):
            out[path.name] = profile_accuracy(path, split, metric)
    return out


def _arrays(scores: dict[str, dict[str, float]], names: dict[str, str], people: list[str]) -> dict | None:
    """``{key: per-profile array over people}`` for ``names = {key: probe}``; None if a probe is missing."""
    if any(probe not in scores for probe in names.values()):
        return None
    keep = [p for p in people if all(p in scores[probe] for probe in names.values())]
    if not keep:
        return None
    return {key: np.array([scores[probe][p] for p in keep]) for key, probe in names.items()}


def stage_row(run_dir: Path, k: int, vanilla: dict, metric: str, n_boot: int, seed: int) -> dict[str, Any]:
    """One probed stage: accuracies and recoveries (see the module docstring)."""
    refs = {layout.VANILLA_PROBE: vanilla.get(layout.VANILLA_PROBE, {})}
    refs |= {f"vanilla_{s}": vanilla[s] for s in layout.QUANT_PROBES if s in vanilla}
    scores = _scored(run_dir, k, "forget", metric) | refs
    attack = _attack_record(run_dir, k, "relearn") or {}
    unexposed = sorted(p for ids in (attack.get("unexposed") or {}).values() for p in ids)
    everyone = sorted(scores.get(layout.UNLEARNED_PROBE, {}))
    row: dict[str, Any] = {"stage": k, "unexposed": unexposed, "steps": attack.get("steps"), "notes": []}
    row["accuracy"] = {
        col: _mean(scores.get(col), unexposed if col in ("relearn", "benign") else everyone)
        for col in (*ACCURACY_COLUMNS, *(f"vanilla_{s}" for s in layout.QUANT_PROBES))
    }
    recovery: dict[str, Any] = {}
    for probe in ("relearn", "benign"):
        arr = _arrays(scores, {"a0": "vanilla", "ak": "unlearned", "probe": probe}, unexposed)
        recovery[probe] = _estimate(arr, None, n_boot, seed, row["notes"], probe)
    both = _arrays(
        scores, {"a0": "vanilla", "ak": "unlearned", "probe": "relearn", "control": "benign"}, unexposed
    )
    recovery["relearn_minus_benign"] = (
        rb.recovery_difference_estimate(**both, n_boot=n_boot, seed=seed).as_dict() if both else None
    )
    for scheme in layout.QUANT_PROBES:
        names = {"a0": "vanilla", "ak": "unlearned", "probe": scheme, "ref": f"vanilla_{scheme}"}
        arr = _arrays(scores, names, everyone)
        recovery[scheme] = _estimate(arr, "ref", n_boot, seed, None, scheme) if arr else None
    row["recovery"] = recovery
    return row


def _estimate(arr: dict | None, ref: str | None, n_boot: int, seed: int, notes: list | None, probe: str):
    if arr is None:
        if notes is not None:
            notes.append(f"{probe}: not scored")
        return None
    est = rb.recovery_estimate(
        arr["a0"], arr["ak"], arr["probe"], arr.get(ref) if ref else None, n_boot=n_boot, seed=seed
    )
    return est.as_dict()


def _mean(acc: dict[str, float] | None, people: list[str]) -> float | None:
    values = [acc[p] for p in people if acc and p in acc]
    return float(np.mean(values)) if values else None


def control_row(run_dir: Path, metric: str, n_boot: int, seed: int) -> dict[str, Any] | None:
    """The from-scratch control: unexposed holdout people before/after the attack from the vanilla model."""
    attack = _attack_record(run_dir, 0, "scratch")
    holdout = _scored(run_dir, 0, "holdout", metric)
    if not attack or "scratch" not in holdout or layout.VANILLA_PROBE not in holdout:
        return None
    people = sorted(p for ids in attack["unexposed"].values() for p in ids)
    arr = _arrays(holdout, {"before": layout.VANILLA_PROBE, "after": "scratch"}, people)
    if arr is None:
        return None
    forget = _scored(run_dir, 0, "forget", metric).get(layout.VANILLA_PROBE, {})
    a0 = float(np.mean(list(forget.values()))) if forget else None
    b0 = float(np.mean(list(holdout[layout.VANILLA_PROBE].values())))
    margin = None if a0 is None else a0 - b0
    est = rb.control_estimate(arr["before"], arr["after"], margin, n_boot=n_boot, seed=seed)
    return {
        "unexposed": people,
        "steps": attack.get("steps"),
        "base_rate": b0,
        "vanilla_forget": a0,
        "before": float(arr["before"].mean()),
        "after": float(arr["after"].mean()),
        "gain": est.as_dict(),
    }


def robustness_table(
    run_dir: str | Path, metric: str = DEFAULT_METRIC, n_boot: int = rb.DEFAULT_RESAMPLES, seed: int = 0
) -> dict[str, Any] | None:
    """The run's robustness table (``{"stages": [rows], "control": …}``), or None when nothing was probed."""
    run_dir = Path(run_dir)
    root = run_dir / layout.PROBES_DIR / layout.EVAL_DIR
    stages = sorted(layout.stage_indices(root) - {0}) if root.is_dir() else []
    if not stages:
        return None
    vanilla = _scored(run_dir, 0, "forget", metric)
    rows = [stage_row(run_dir, k, vanilla, metric, n_boot, seed) for k in stages]
    return {"metric": metric, "stages": rows, "control": control_row(run_dir, metric, n_boot, seed)}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _fmt_est(est: dict | None) -> str:
    if not est or est.get("value") is None:
        return "n/a" if not est else f"n/a ({est.get('note', 'undefined')})"
    if est.get("low") is None:
        return _fmt(est["value"])
    return f"{est['value']:.2f} [{est['low']:.2f}, {est['high']:.2f}]"


def robustness_markdown(name: str, table: dict[str, Any]) -> list[str]:
    """The report.md lines of one run's robustness table."""
    schemes = [
        s for s in layout.QUANT_PROBES if any(r["accuracy"].get(s) is not None for r in table["stages"])
    ]
    head = ["stage", "vanilla", "unlearned", "relearn", "benign", *schemes]
    head += ["relearn recovery", "benign recovery", "relearn − benign", *(f"{s} recovery" for s in schemes)]
    lines = [f"### {name}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table["stages"]:
        acc, rec = row["accuracy"], row["recovery"]
        cells = [str(row["stage"])] + [_fmt(acc.get(c)) for c in head[1 : 5 + len(schemes)]]
        cells += [_fmt_est(rec.get(p)) for p in ("relearn", "benign", "relearn_minus_benign", *schemes)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Accuracy on forget tasks 1..K; relearn and benign on the people the attack did not show "
        "(unexposed), the other columns on every person of those tasks. Recovery: share of the forgotten "
        "accuracy brought back, 95% paired profile-bootstrap interval; relearn − benign: the difference of the "
        "two on the same people (above 0 where the interval excludes it: the forgotten data itself brings the "
        "people back, not any fine-tuning).",
    ]
    control = table.get("control")
    if control:
        gain = control["gain"]
        lines += [
            "",
            f"From-scratch control (the same attack from the vanilla model, holdout people never learned): "
            f"accuracy {control['before']:.2f} (base rate) -> {control['after']:.2f}, gain {_fmt_est(gain)}, "
            f"{_fmt(gain.get('share'))} of the vanilla model's margin over the base rate.",
        ]
    notes = [f"stage {r['stage']}: {n}" for r in table["stages"] for n in r["notes"]]
    return lines + ([""] + [f"- {n}" for n in notes] if notes else []) + [""]


def robustness_plot(table: dict[str, Any], path: Path, title: str) -> None:
    """Bars of every probe's recovery per probed stage, with the intervals as error bars."""
    probes = ["relearn", "benign", *layout.QUANT_PROBES]
    probes = [p for p in probes if any(r["recovery"].get(p) for r in table["stages"])]
    fig = plots.new_figure(ROBUSTNESS_SIZE)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(probes))
    for i, probe in enumerate(probes):
        xs, ys, errs = [], [], [[], []]
        for j, row in enumerate(table["stages"]):
            est = row["recovery"].get(probe) or {}
            if est.get("value") is None:
                continue
            xs.append(j + i * width)
            ys.append(est["value"])
            low, high = est.get("low"), est.get("high")
            errs[0].append(0 if low is None else est["value"] - low)
            errs[1].append(0 if high is None else high - est["value"])
        ax.bar(xs, ys, width, yerr=errs, capsize=3, label=probe)
    share = ((table.get("control") or {}).get("gain") or {}).get("share")
    if share is not None:
        ax.axhline(share, color="grey", linestyle="--", linewidth=1, label="scratch control (share taught)")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(table["stages"]))])
    ax.set_xticklabels([f"stage {r['stage']}" for r in table["stages"]])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("recovery (share of forgetting undone)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    plots.save(fig, Path(path))
