"""The leaderboard file: a frozen protocol, one entry per (method, seed) run, and the aggregate over seeds.

``leaderboard.json`` (versioned: ``format`` + ``format_version``)::

    protocol   data scale and the data hash of every seed, stages, evaluation schedule, stop rule (target, check
               interval, step budget), lmms-eval tasks, ``limit``, the vanilla fine-tune recipe, the headline
               metric set, and the package versions it was made with
    entries    per run: method, seed, name, where it came from, its data hash and vanilla model id, the package
               versions of its stages, and its headline metrics (icu_tasks.report.headline)
    aggregate  per method mean and seed-level interval of every metric, paired differences, rankings with
               ties (icu_tasks.report.comparison)

``leaderboard.md`` next to it renders the same. :func:`add_runs` (``icu-bench report --leaderboard FILE RUN...``)
adds a user's runs: each must have been made under the protocol (same stages, schedule, stop rule, tasks and
limit, a step budget no larger) on the data of one of its seeds (same data hash); anything else is refused with
one line naming the difference, and nothing is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from icu_tasks.errors import ConfigError, StageError
from icu_tasks.records import layout
from icu_tasks.records.files import read_record
from icu_tasks.records.schedule import EvalSchedule
from icu_tasks.report.comparison import aggregate, comparison_markdown
from icu_tasks.report.draws import run_draws
from icu_tasks.report.headline import headline_metrics
from icu_tasks.report.results import load_run
from icu_tasks.report.summary import run_summary
from icu_tasks.report.training import stage_training

FORMAT = "icu-bench-leaderboard"
FORMAT_VERSION = 1
#: What a comparison's protocol fixes (a later call of ``icu-bench compare`` must match every one). The metric
#: set is recorded too but not among them: it decides only the aggregation, which is recomputed from the runs.
PROTOCOL_KEYS = ("data", "stages", "schedule", "stop_rule", "tasks", "limit", "finetune", "versions")


def protocol_difference(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The :data:`PROTOCOL_KEYS` on which two protocols differ (the seeds' data hashes are not compared)."""
    strip = ("seeds",)
    diff = []
    for key in PROTOCOL_KEYS:
        a, b = old.get(key), new.get(key)
        if key == "data":
            a = {k: v for k, v in (a or {}).items() if k not in strip}
            b = {k: v for k, v in (b or {}).items() if k not in strip}
        if a != b:
            diff.append(key)
    return diff


def _run_record(run_dir: Path) -> dict[str, Any]:
    if not (run_dir / layout.RUN_JSON).is_file():
        raise StageError(f"{run_dir} is not a run dir of `icu-bench run` (no {layout.RUN_JSON})")
    return read_record(run_dir / layout.RUN_JSON)


def _stage_records(run_dir: Path, stages: int) -> list[dict[str, Any]]:
    return [read_record(layout.stage_dir(run_dir, k) / layout.STAGE_JSON) for k in range(1, stages + 1)]


def _summary(run_dir: Path) -> dict[str, Any]:
    """The run's own summary: ``report/report.json`` if it is there, else computed from its results."""
    path = layout.report_dir(run_dir) / layout.REPORT_JSON
    if path.is_file():
        return read_record(path)["runs"][0]
    run = load_run(run_dir)
    return run_summary(run, n_boot=0) | {"training": stage_training(run.root, run.stages)}


def entry_from_run(
    run_dir: str | Path, *, seed: int, source: str, root: str | Path | None = None
) -> dict[str, Any]:
    """One leaderboard entry from a finished run dir (``run``: the path relative to ``root`` when given, else as
    passed: a published leaderboard should not carry a machine's absolute paths), with the bootstrap draws of
    its paired metrics (:mod:`icu_tasks.report.draws`)."""
    run_dir = Path(run_dir)
    record = _run_record(run_dir)
    stages = _stage_records(run_dir, int(record.get("stages", 0)))
    where = run_dir if root is None else run_dir.resolve().relative_to(Path(root).resolve())
    return {
        "method": record.get("method"),
        "seed": int(seed),
        "name": record.get("name") or run_dir.name,
        "run": str(where),
        "source": source,
        "data_hash": record.get("data_hash"),
        "base_model_id": record.get("base_model_id"),
        "versions": (stages[0].get("versions") if stages else None) or {},
        "metrics": headline_metrics(_summary(run_dir)),
        "draws": run_draws(run_dir),
    }


def build_leaderboard(protocol: dict[str, Any], entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The leaderboard dict: protocol, entries (sorted by method, seed) and their aggregate."""
    entries = sorted(entries, key=lambda e: (str(e["method"]), int(e["seed"])))
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "protocol": protocol,
        "entries": entries,
        "aggregate": aggregate(entries) if entries else None,
    }


def read_leaderboard(path: str | Path) -> dict[str, Any]:
    """A leaderboard file; ConfigError for a missing, unreadable or foreign file or a newer format version."""
    path = Path(path)
    try:
        board = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read leaderboard {path}: {err}") from None
    if not isinstance(board, dict) or board.get("format") != FORMAT:
        raise ConfigError(f'{path} is not an ICU-Bench leaderboard file (no "format": "{FORMAT}")')
    version = board.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise ConfigError(
            f"{path} has format_version {version!r}; this icu-bench reads leaderboards up to version "
            f"{FORMAT_VERSION} (upgrade icu-bench)"
        )
    return board


def write_leaderboard(board: dict[str, Any], path: str | Path) -> Path:
    """Write ``path`` (JSON) and the markdown next to it (same name, ``.md``), each atomically."""
    path = Path(path)
    layout.atomic_write_text(path, json.dumps(board, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    layout.atomic_write_text(path.with_suffix(".md"), leaderboard_markdown(board))
    return path


def _protocol_lines(p: dict[str, Any]) -> list[str]:
    data, rule, sched = p["data"], p["stop_rule"], p["schedule"]
    seeds = ", ".join(f"{s} (`{h[:12]}`)" for s, h in sorted((data.get("seeds") or {}).items()))
    if rule.get("until_forgotten") is None:
        stop = "the methods' calibrated step budgets"
    else:
        stop = (
            f"until normalised forgetting ≥ {rule['until_forgotten']} (teacher-forced, checked every "
            f"{rule['check_every']} steps), budget {rule['budget']} steps"
        )
    versions = ", ".join(f"{k} {v}" for k, v in p.get("versions", {}).items())
    return [
        f"- data: {data['profiles']} profiles, {data['tasks']} forget tasks of {data['profiles_per_task']}, "
        f"image {data['image_size']} px; seeds (data hash): {seeds or 'none yet'}",
        f"- stages: {p['stages']}; evaluation every {sched['eval_every']} stage(s), window "
        f"{sched['eval_window'] if sched['eval_window'] is not None else 'all tasks'}",
        f"- stop rule: {stop}",
        f"- tasks: {', '.join(p['tasks'])}; limit: {p['limit'] or 'none'}",
        f"- vanilla fine-tune: {json.dumps(p['finetune'], sort_keys=True)}",
        f"- package versions: {versions}",
    ]


def leaderboard_markdown(board: dict[str, Any]) -> str:
    """The leaderboard as markdown: the protocol, the runs, then the comparison over seeds."""
    out = ["# ICU-Bench leaderboard", "", f"Format version {board['format_version']}.", "", "## Protocol", ""]
    out += _protocol_lines(board["protocol"]) + [
        "",
        "## Runs",
        "",
        "| method | seed | run | source |",
        "|---|---|---|---|",
    ]
    out += [f"| {e['method']} | {e['seed']} | `{e['run']}` | {e['source']} |" for e in board["entries"]]
    if board["aggregate"] is None:
        return "\n".join(out) + "\n"
    comparison = comparison_markdown(board["aggregate"], "Comparison over seeds")
    return "\n".join(out) + "\n\n#" + comparison  # one level down: a section of the leaderboard


def check_run(run_dir: Path, protocol: dict[str, Any]) -> int:
    """The seed of a user's run made under ``protocol``; ConfigError (one line) naming what differs."""
    record = _run_record(run_dir)
    seeds = {h: int(s) for s, h in (protocol["data"].get("seeds") or {}).items()}
    if record.get("data_hash") not in seeds:
        d = protocol["data"]
        raise ConfigError(
            f"{run_dir} was made on data {str(record.get('data_hash'))[:12]}, none of the leaderboard's seeds "
            f"({', '.join(str(s) for s in sorted(seeds.values()))}): generate it with `icu-bench data generate "
            f"--seed S --profiles {d['profiles']} --tasks {d['tasks']} --profiles-per-task {d['profiles_per_task']} "
            f"--image-size {d['image_size']}`"
        )
    rule, sched = protocol["stop_rule"], protocol["schedule"]
    wanted = {
        "stages": protocol["stages"],
        "eval_every": sched["eval_every"],
        "eval_window": sched["eval_window"],
        "until_forgotten": rule["until_forgotten"],
        "check_every": rule["check_every"]
        if rule["until_forgotten"] is not None
        else record.get("check_every"),
        "limit": protocol["limit"],
    }
    got = {k: record.get(k) for k in wanted} | {"eval_every": record.get("eval_every", 1)}
    diff = [f"{k} {got[k]!r} (protocol: {v!r})" for k, v in wanted.items() if got[k] != v]
    missing = sorted(set(protocol["tasks"]) - set(record.get("tasks") or []))
    if missing:
        diff.append(f"tasks lack {', '.join(missing)}")
    budgets = [(s.get("stop_rule") or {}).get("budget") for s in _stage_records(run_dir, protocol["stages"])]
    over = [b for b in budgets if b is not None and rule.get("budget") is not None and b > rule["budget"]]
    if over:
        diff.append(f"step budget {max(over)} (protocol: at most {rule['budget']})")
    diff += _vanilla_difference(record, protocol["finetune"])
    if diff:
        raise ConfigError(f"{run_dir} was made under another protocol: {'; '.join(diff)}")
    return seeds[record["data_hash"]]


def _vanilla_difference(record: dict[str, Any], finetune: dict[str, Any]) -> list[str]:
    """How the run's vanilla model (its ``base`` dir's ``finetune.json``) departs from the protocol's fine-tune
    recipe: every field the protocol fixes must have the protocol's value."""
    path = Path(str(record.get("base"))) / layout.FINETUNE_JSON
    if not path.is_file():
        return [f"its base model has no {path.name} ({path}): the protocol's vanilla is fine-tuned with "
                f"`icu-bench finetune` and the recipe {json.dumps(finetune, sort_keys=True)}"]  # fmt: skip
    config = read_record(path).get("config") or {}
    return [
        f"vanilla fine-tune {key} {config.get(key)!r} (protocol: {value!r})"
        for key, value in sorted(finetune.items())
        if config.get(key) != value
    ]


def add_runs(path: str | Path, run_dirs: list[str | Path]) -> dict[str, Any]:
    """Add finished user runs to the leaderboard file ``path`` (every run checked before anything is written)."""
    board = read_leaderboard(path)
    protocol = board["protocol"]
    taken = {(e["method"], int(e["seed"])) for e in board["entries"]}
    schedule = EvalSchedule(protocol["schedule"]["eval_every"], protocol["schedule"]["eval_window"])
    new = []
    for run_dir in map(Path, run_dirs):
        seed = check_run(run_dir, protocol)
        _check_finished(run_dir, protocol["stages"], schedule)
        entry = entry_from_run(run_dir, seed=seed, source="user")
        key = (entry["method"], seed)
        if key in taken:
            raise ConfigError(f"the leaderboard already has method {key[0]!r} on seed {seed} ({run_dir})")
        taken.add(key)
        new.append(entry)
    board = build_leaderboard(protocol, board["entries"] + new)
    write_leaderboard(board, path)
    return board


def _check_finished(run_dir: Path, stages: int, schedule: Any) -> None:
    missing = [
        k for k in range(1, stages + 1) if not (layout.stage_dir(run_dir, k) / layout.STAGE_JSON).is_file()
    ]
    unscored = [
        k for k in range(stages + 1)
        if schedule.scored(k, stages) and not any(layout.eval_dir(run_dir, k).rglob("*_results.json"))
    ]  # fmt: skip
    if missing or unscored:
        raise ConfigError(
            f"{run_dir} is not finished (stages missing: {missing or 'none'}; not scored: {unscored or 'none'}): "
            "resume it with `icu-bench run --out RUN` first"
        )
