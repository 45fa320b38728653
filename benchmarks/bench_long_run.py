"""A long continual run: per-stage training and scoring time against the stage index, peak RSS, disk per stage.

Documented setting: 20 stages of one method on a medium data set (20 forget tasks)::

    python benchmarks/bench_long_run.py --stages 20 [--method ga] [--steps 5] [--work DIR] [--full-data DIR]

Runs ``icu-bench run`` (the real CLI, in a subprocess whose peak RSS is read from the kernel's accounting of
the child, ``os.wait4``) on the tiny model, untrained on purpose: it never stops before ``max_new_tokens``, the
worst case for generation cost. The run records its own estimate and the measured seconds of every stage in
``RUN/cost.json`` (:mod:`icu_unlearn.pipeline.cost`); this script prints, per stage, training and scoring seconds, the
requests scored and the seconds per request, the least-squares slope of each against the stage index (training
must stay flat; scoring grows only with the requests scored, so seconds per request must stay flat), disk per
stage (``stage_K/`` and ``eval/stage_K/``), the estimate made at the start against the measured wall time, and
this run's seconds per request and per training stage extrapolated to a full-scale 100-stage run: request
counts from ``--full-data`` (a full-scale data dir; counted, no model run) or, without it, scaled from this
data set (forget requests only). The extrapolation to one GPU and a 7B
model uses the stated assumptions ``--gpu-request-s`` and ``--gpu-step-s`` (not measured here).
Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent


def prepare(work: Path, tasks: int, per_task: int, env: dict[str, str]) -> tuple[Path, Path]:
    """A medium data set (``tasks`` forget tasks) and the tiny model under ``work`` (reused when present)."""
    data, tiny = work / "data", work / "tiny"
    cli = str(BIN / "icu-bench")
    if not (data / "manifest.json").is_file():
        profiles = 2 * tasks * per_task + 12  # forget profiles + as many retain + 12 (even, half per domain)
        scale = ["--profiles", str(profiles + profiles % 2), "--tasks", str(tasks)]
        scale += ["--profiles-per-task", str(per_task), "--image-size", "160", "--workers", "2"]
        subprocess.run([cli, "data", "generate", "--out", str(data), *scale, "--quiet"], env=env, check=True)
    if not (tiny / "config.json").is_file():
        build = [cli, "model", "build-tiny", "--out", str(tiny), "--data", str(data)]
        subprocess.run(build, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return data, tiny


def run(cmd: list[str], log: Path, env: dict[str, str]) -> tuple[float, float]:
    """Run ``cmd`` to the end (output to ``log``); (wall seconds, peak RSS MiB). A failure raises."""
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:])
        raise RuntimeError(f"icu-bench run exited {proc.returncode}:\n{tail}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024  # ru_maxrss: KiB


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def slope(ks: list[int], values: list[float]) -> float:
    """Least-squares slope of ``values`` against ``ks`` (NaN with fewer than 2 points)."""
    return float(np.polyfit(ks, values, 1)[0]) if len(ks) >= 2 else float("nan")


def stage_table(out: Path, cost: dict) -> list[dict]:
    rows = []
    for s in cost["per_stage"]:
        k, actual = s["stage"], cost["actual"].get(str(s["stage"]), {})
        score = actual.get("score_s")
        rows.append({
            "stage": k, "train_s": actual.get("train_s"), "score_s": score, "requests": s["requests"],
            "ms_per_request": 1000 * score / s["requests"] if score and s["requests"] else None,
            "stage_mib": du(out / f"stage_{k}") / 2**20, "eval_mib": du(out / "eval" / f"stage_{k}") / 2**20,
        })  # fmt: skip
    return rows


def print_stages(rows: list[dict], title: str) -> dict[str, float]:
    """Print the per-stage table and the slopes against the stage index; returns the slopes."""
    print(title)
    print(
        f"{'stage':>5} {'train s':>8} {'score s':>8} {'requests':>9} {'ms/req':>7} {'stage MiB':>10} {'eval MiB':>9}"
    )
    f = lambda x, d=2: "-" if x is None else f"{x:.{d}f}"  # noqa: E731
    for r in rows:
        print(f"{r['stage']:>5} {f(r['train_s']):>8} {f(r['score_s']):>8} {r['requests']:>9} "
              f"{f(r['ms_per_request'], 1):>7} {r['stage_mib']:>10.2f} {r['eval_mib']:>9.2f}")  # fmt: skip
    trained = [r for r in rows if r["train_s"] is not None]
    scored = [r for r in rows if r["score_s"] is not None]
    slopes = {
        "train_s_per_stage": slope([r["stage"] for r in trained], [r["train_s"] for r in trained]),
        "score_s_per_stage": slope([r["stage"] for r in scored], [r["score_s"] for r in scored]),
        "ms_per_request_per_stage": slope(
            [r["stage"] for r in scored], [r["ms_per_request"] for r in scored]
        ),
    }
    print("slopes against the stage index: " + ", ".join(f"{k} {v:+.4f}" for k, v in slopes.items()))
    return slopes


def full_scale(
    cost: dict, rows: list[dict], full_data: Path | None, tiny: Path, args: argparse.Namespace
) -> dict:
    """A 100-stage full-scale run: requests (counted or scaled) x this run's measured seconds per request
    (lmms-eval overhead included) and per training stage, and the same counts under the GPU assumption."""
    scored = [r for r in rows if r["ms_per_request"] is not None]
    trained = [r["train_s"] for r in rows if r["train_s"] is not None]
    per_req = sum(r["score_s"] for r in scored) / sum(r["requests"] for r in scored)
    if full_data is not None:
        from icu_unlearn.pipeline.cost import plan_requests
        from icu_unlearn.pipeline.run import RunConfig

        plan = plan_requests(RunConfig(base=str(tiny), data=str(full_data), method=args.method, stages=100))
        requests = sum(sum(plan.stage(k).values()) for k in range(101))
        how = f"counted on {full_data}"
    else:  # forget requests grow with the tasks and profiles per task; retain/utility kept at this size
        stage0 = cost["per_stage"][0]["by_family"]
        forget = sum(n for key, n in stage0.items() if key.startswith("forget/"))
        rest = sum(n for key, n in stage0.items() if not key.startswith("forget/"))
        per_task = forget / cost["forget_tasks_in_data"]
        requests = int(101 * (100 * per_task * args.full_profiles_per_task / args.profiles_per_task + rest))
        how = "scaled from this data set: forget x 100 tasks, retain/utility NOT scaled (pass --full-data)"
    train = 100 * (sum(trained) / len(trained))
    gpu = requests * args.gpu_request_s + 100 * args.steps * args.gpu_step_s
    return {
        "requests": requests, "how": how, "ms_per_request": 1000 * per_req,
        "this_machine_h": (requests * per_req + train) / 3600,
        "gpu_7b_h_assumed": gpu / 3600,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", type=int, default=20, help="stages T (documented setting: 20)")
    ap.add_argument("--tasks", type=int, default=None, help="forget tasks in the data (default: max(20, T))")
    ap.add_argument("--profiles-per-task", type=int, default=2, dest="profiles_per_task")
    ap.add_argument("--method", default="ga")
    ap.add_argument("--steps", type=int, default=5, help="unlearning steps per stage")
    ap.add_argument("--batch-size", type=int, default=16, dest="batch_size", help="evaluation batch size")
    ap.add_argument("--eval-every", type=int, default=1, dest="eval_every")
    ap.add_argument("--eval-window", type=int, default=None, dest="eval_window")
    ap.add_argument("--work", default="/tmp/icu_bench_long_run")
    ap.add_argument("--full-data", default=None, dest="full_data", help="a full-scale data dir to count")
    ap.add_argument("--full-profiles-per-task", type=int, default=5, dest="full_profiles_per_task")
    ap.add_argument(
        "--gpu-request-s",
        type=float,
        default=0.02,
        dest="gpu_request_s",
        help="ASSUMED seconds per scoring request of a 7B model on one GPU (batched; not measured)",
    )
    ap.add_argument("--gpu-step-s", type=float, default=0.5, dest="gpu_step_s",
                    help="ASSUMED seconds per LoRA training step of a 7B model on one GPU (not measured)")  # fmt: skip
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    data, tiny = prepare(work, args.tasks or max(20, args.stages), args.profiles_per_task, env)
    out = work / f"run_{args.method}_{args.stages}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [str(BIN / "icu-bench"), "run", "--base", str(tiny), "--data", str(data), "--method", args.method,
           "--stages", str(args.stages), "--set", f"max_steps={args.steps}", "--batch-size", str(args.batch_size),
           "--eval-every", str(args.eval_every), "--out", str(out)]  # fmt: skip
    if args.eval_window is not None:
        cmd += ["--eval-window", str(args.eval_window)]
    wall, rss = run(cmd, work / "run.log", env)
    cost = json.loads((out / "cost.json").read_text())
    rows = stage_table(out, cost)
    slopes = print_stages(rows, f"{args.stages}-stage {args.method} run, {args.steps} steps/stage, data {data} "
                          f"({cost['forget_tasks_in_data']} forget tasks), tiny untrained model: {wall:.0f} s, "
                          f"peak RSS {rss:.0f} MiB")  # fmt: skip
    est = cost["estimate_s"]
    print(f"estimate at the start: {est['total']:.0f} s (training {est['training']:.0f} s, scoring "
          f"{est['scoring']:.0f} s); measured wall time {wall:.0f} s")  # fmt: skip
    full = full_scale(cost, rows, Path(args.full_data) if args.full_data else None, tiny, args)
    print(f"full scale (100 stages, {full['requests']:,} requests, {full['how']}): "
          f"{full['this_machine_h']:.1f} h on this machine at this run's {full['ms_per_request']:.1f} ms/request (tiny model); "
          f"{full['gpu_7b_h_assumed']:.1f} h on one GPU for a 7B model ASSUMING {args.gpu_request_s} s/request "
          f"and {args.gpu_step_s} s/step")  # fmt: skip
    print(json.dumps({"bench": "long_run", "stages": args.stages, "wall_s": round(wall, 1),
                      "peak_rss_mib": round(rss, 1), "slopes": slopes, "full_scale": full,
                      "disk_mib_per_stage": float(np.mean([r["stage_mib"] + r["eval_mib"] for r in rows[1:]]))}))  # fmt: skip


if __name__ == "__main__":
    main()
