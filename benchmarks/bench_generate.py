"""Benchmark: full ICU-Bench generation (1,000 profiles, 9,500 images) with 1 and 2 workers.

Prints the seconds of each run, the speed-up ratio, and whether both produced the same data hash; the target
is a full generation in at most 5 minutes on 2 cores. The last line is one JSON object (for
``benchmarks/run_all.py``).

    .venv/bin/python benchmarks/bench_generate.py [--profiles 1000 --tasks 100 --workers 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from icu_tasks.data.dataset import validate
from icu_tasks.data.generate import generate

TARGET_S = 300.0


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the spawned render workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _timed_run(out: Path, workers: int, scale: dict) -> dict:
    """Generate into ``out`` with ``workers``, validate it (with the hash), print one line, remove it."""
    cpu0 = _cpu_seconds()
    start = time.perf_counter()
    manifest = generate(out, workers=workers, progress=False, **scale)
    seconds = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu0
    check = time.perf_counter()
    validate(out, check_hash=True)
    validate_s = time.perf_counter() - check
    size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    c = manifest["counts"]
    print(
        f"workers={workers}: {seconds:7.1f} s wall, {cpu:6.1f} s CPU  ({c['images'] + c['utility_images']} images, "
        f"{c['rows_total']} rows, {size_mb:.0f} MiB; validate --hash {validate_s:.1f} s)"
    )
    shutil.rmtree(out)
    return {
        "workers": workers,
        "seconds": round(seconds, 2),
        "cpu_s": round(cpu, 2),
        "hash": manifest["data_hash"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--profiles-per-task", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=None, help="default: the generator's default")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    scale = {"seed": args.seed, "profiles": args.profiles, "tasks": args.tasks}
    scale["profiles_per_task"] = args.profiles_per_task
    if args.image_size:
        scale["image_size"] = args.image_size
    print(f"cpu cores: {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}; scale {scale}")
    results = []
    with tempfile.TemporaryDirectory(prefix="icu-bench-gen-") as tmp:
        for w in args.workers:
            results.append(_timed_run(Path(tmp) / f"w{w}", w, scale))
    base = results[0]["seconds"]
    for r in results[1:]:
        print(f"speed-up {r['workers']} vs {results[0]['workers']} workers: {base / r['seconds']:.2f}x")
    same = len({r["hash"] for r in results}) == 1
    best = min(r["seconds"] for r in results)
    print(f"same data_hash for every worker count: {same}")
    print(
        f"target: full generation <= {TARGET_S:.0f} s on 2 cores -> best {best:.1f} s: {'PASS' if best <= TARGET_S else 'FAIL'}"
    )
    summary = {
        "benchmark": "generate",
        "profiles": args.profiles,
        "runs": results,
        "speedup": round(base / results[-1]["seconds"], 2),
        "best_s": best,
        "target_s": TARGET_S,
        "same_hash": same,
    }
    print(json.dumps(summary))
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
