"""Run every ``benchmarks/bench_*.py`` and print ONE table: benchmark, measured, target, pass/fail.

Each benchmark runs as its own subprocess; its last stdout line that is a JSON object (optionally prefixed
``RESULT ``) is its result. A result may carry ``rows`` (``name``, ``measured``, ``target``, ``pass``: true,
false or null for informational rows); the older scripts' results are read by the small interpreters below.
The demo's wall time is read from a demo dir (``--demo-dir runs/demo``), otherwise it is reported "not run".

    .venv/bin/python benchmarks/run_all.py [--quick] [--only adapter_size,generate] [--skip continual]
                                           [--demo-dir runs/demo] [--json]

``--quick`` passes each benchmark its smallest settings (data generation at 1/10 scale, extrapolated linearly —
an over-estimate, the fixed start-up is scaled too). Exit status 1 when a row fails or a benchmark errors.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FULL_PROFILES = 1000
DEMO_TARGET_S = 6 * 60

Row = dict[str, Any]


def _generate_rows(r: dict[str, Any]) -> list[Row]:
    profiles = int(r.get("profiles") or FULL_PROFILES)
    best, target = float(r["best_s"]), float(r["target_s"])
    estimate = best * FULL_PROFILES / profiles
    measured = (
        f"{best:.0f} s" if profiles >= FULL_PROFILES else f"~{estimate:.0f} s (est. from {profiles} profiles)"
    )
    workers = max(run["workers"] for run in r["runs"])
    ok = estimate <= target and bool(r.get("same_hash", True))
    name = f"data generation, {FULL_PROFILES:,} profiles, {workers} workers"
    return [{"name": name, "measured": measured, "target": f"<= {target:.0f} s", "pass": ok}]


def _batch_rows(r: dict[str, Any]) -> list[Row]:
    measured = f"{r['ratio']:.2f}x" + ("" if r["identical"] else " (answers differ)")
    name = f"batched generation, batch {r['batch_size']} vs 1"
    return [
        {"name": name, "measured": measured, "target": ">= 2x", "pass": r["ratio"] >= 2 and r["identical"]}
    ]


def _continual_rows(r: dict[str, Any]) -> list[Row]:
    measured = f"{r['ratio']:.2f}x ({r['shell_s']:.0f} s vs {r['inprocess_s']:.0f} s)"
    name = "in-process run vs shell loop"
    return [{"name": name, "measured": measured, "target": ">= 3x", "pass": r["ratio"] >= 3}]


def _own_rows(r: dict[str, Any]) -> list[Row]:
    return list(r["rows"])


@dataclass
class Bench:
    """How run_all runs one benchmark: its quick and full arguments and how its result becomes rows."""

    quick: list[str] = field(default_factory=list)
    full: list[str] = field(default_factory=list)
    rows: Callable[[dict[str, Any]], list[Row]] = _own_rows


#: Known benchmarks (file ``bench_<name>.py``); any other ``bench_*.py`` runs without arguments.
BENCHES: dict[str, Bench] = {
    "generate": Bench(["--profiles", "100", "--tasks", "10", "--workers", "2"], [], _generate_rows),
    "generate_batch": Bench(["--samples", "16", "--threads", "1"], ["--threads", "1"], _batch_rows),
    "continual": Bench(["--stages", "2", "--limit", "8", "--steps", "2"], [], _continual_rows),
    "adapter_size": Bench(),
    "memory": Bench(["--quick"], []),
}


def discover() -> list[str]:
    """Names of every ``benchmarks/bench_*.py``, known ones first in table order."""
    found = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    return [n for n in BENCHES if n in found] + [n for n in found if n not in BENCHES]


def last_json(stdout: str) -> dict[str, Any] | None:
    """The last line of ``stdout`` that is a JSON object (a ``RESULT `` prefix is allowed)."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip().removeprefix("RESULT ").strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return None


def run_bench(name: str, quick: bool, timeout: float) -> list[Row]:
    """Run ``bench_<name>.py`` and turn its result into table rows (an error row when it has none)."""
    spec = BENCHES.get(name, Bench())
    cmd = [sys.executable, str(HERE / f"bench_{name}.py"), *(spec.quick if quick else spec.full)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=HERE.parent)
    except subprocess.TimeoutExpired:
        return [{"name": name, "measured": f"timed out after {timeout:.0f} s", "target": "", "pass": False}]
    seconds = time.perf_counter() - start
    result = last_json(proc.stdout)
    if result is None:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        why = f"error (exit {proc.returncode}): {lines[-1][:120] if lines else 'no output'}"
        return [{"name": name, "measured": why, "target": "", "pass": False}]
    try:
        if name not in BENCHES and "rows" not in result:  # a new script without rows: show its result
            rows = [{"name": name, "measured": json.dumps(result)[:100], "target": "", "pass": None}]
        else:
            rows = spec.rows(result)
    except (KeyError, TypeError, ValueError) as err:
        return [{"name": name, "measured": f"unreadable result ({err!r})", "target": "", "pass": False}]
    for row in rows:
        row.setdefault("bench", name)
        row["seconds"] = round(seconds, 1)
    return rows


def demo_row(demo_dir: Path | None) -> Row:
    """The demo's wall time: ``demo.json``'s seconds when the demo records them, else from its files' times."""
    row: Row = {"name": "demo (icu-bench demo), end to end", "target": f"<= {DEMO_TARGET_S // 60} min"}
    if demo_dir is None:
        return row | {"measured": "not run (pass --demo-dir)", "pass": None}
    record = demo_dir / "demo.json"
    seconds, how = None, ""
    if record.is_file():
        data = json.loads(record.read_text(encoding="utf-8"))
        seconds = next((data[k] for k in ("seconds", "wall_seconds", "wall_s") if k in data), None)
    if seconds is None:
        starts = [p.stat().st_mtime for p in (demo_dir / "data").rglob("*") if p.is_file()]
        ends = [p.stat().st_mtime for p in demo_dir.glob("run_*/report/*") if p.is_file()]
        if not starts or not ends:
            return row | {"measured": f"not run ({demo_dir} holds no finished demo)", "pass": None}
        seconds, how = max(ends) - min(starts), " (from file times: first data file to last report file)"
    return row | {"measured": f"{float(seconds) / 60:.1f} min{how}", "pass": float(seconds) <= DEMO_TARGET_S}


def _verdict(value: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "info"}[value]


def table(rows: list[Row]) -> str:
    """A markdown table of the rows."""
    head = ("benchmark", "measured", "target", "result")
    body = [(r["name"], r["measured"], r.get("target", ""), _verdict(r.get("pass"))) for r in rows]
    widths = [max(len(str(line[i])) for line in [head, *body]) for i in range(4)]
    fmt = "| " + " | ".join(f"{{:<{w}}}" for w in widths) + " |"
    lines = [fmt.format(*head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    return "\n".join([*lines, *(fmt.format(*line) for line in body)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smallest settings of every benchmark")
    parser.add_argument("--only", help="comma-separated names (e.g. adapter_size,generate)")
    parser.add_argument("--skip", default="", help="comma-separated names to leave out")
    parser.add_argument("--demo-dir", type=Path, help="a finished `icu-bench demo --out DIR` dir")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per benchmark (3600)")
    parser.add_argument("--json", action="store_true", help="also print the rows as one JSON line")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)

    names = discover()
    if args.list:
        print("\n".join(names))
        return 0
    wanted = [n.strip() for n in args.only.split(",")] if args.only else names
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)} (have: {', '.join(names)})")
    skip = {n.strip() for n in args.skip.split(",") if n.strip()}
    rows: list[Row] = []
    for name in [n for n in wanted if n not in skip]:
        print(
            f"running bench_{name}.py{' --quick settings' if args.quick else ''} ...",
            file=sys.stderr,
            flush=True,
        )
        rows += run_bench(name, args.quick, args.timeout)
    rows.append(demo_row(args.demo_dir))
    print(table(rows))
    if args.json:
        print(json.dumps({"quick": args.quick, "cpu_count": os.cpu_count(), "rows": rows}))
    return 1 if any(r.get("pass") is False for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
