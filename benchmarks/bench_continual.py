"""Shell loop vs in-process ``icu-bench run``: wall time of the same T-stage run, side by side.

Target: in-process >= 3x faster. Both paths run the same method, stages, tasks and limit on the same
vanilla model; the shell loop pays lmms-eval's start-up (~12 s: import + indexing ~2,000 built-in tasks) and a
model load per stage and per evaluation, the in-process run pays them once.

    python benchmarks/bench_continual.py [--stages 4] [--limit 16] [--work DIR]

Builds (or reuses, under --work) a small data set, the tiny model and a short fine-tune first; those are not
timed. Prints both wall times and the ratio, and a JSON line last (for benchmarks/run_all.py).
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

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def prepare(work: Path) -> tuple[Path, Path]:
    from icu_tasks.data.generate import generate
    from icu_unlearn.models.tiny import build_tiny_model, corpus_from_data
    from icu_unlearn.training.finetune import FinetuneConfig, finetune

    data, tiny, vanilla = work / "data", work / "tiny", work / "vanilla"
    if not (data / "manifest.json").is_file():
        generate(data, profiles=24, tasks=6, profiles_per_task=2, image_size=160, progress=False)
    if not (tiny / "config.json").is_file():
        build_tiny_model(tiny, corpus_from_data(data))
    if not (vanilla / "config.json").is_file():
        finetune(tiny, data, vanilla, FinetuneConfig(max_steps=60, batch_size=32))
    return data, vanilla


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", type=int, default=4)
    ap.add_argument("--limit", type=int, default=16, help="docs per task per evaluation")
    ap.add_argument("--method", default="ga")
    ap.add_argument("--steps", type=int, default=5, help="unlearning steps per stage")
    ap.add_argument("--work", default="/tmp/icu_bench_continual")
    args = ap.parse_args()
    work = Path(args.work)
    data, vanilla = prepare(work)
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "LIMIT": str(args.limit)}

    shell_out, inproc_out = work / "shell", work / "inprocess"
    for p in (shell_out, inproc_out):
        shutil.rmtree(p, ignore_errors=True)
    t0 = time.perf_counter()
    subprocess.run(
        ["bash", str(REPO / "examples" / "continual_loop.sh"), str(vanilla), str(data), str(shell_out),
         args.method, str(args.stages), "--", "--max-steps", str(args.steps)],
        env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    shell_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run(
        [str(BIN / "icu-bench"), "run", "--base", str(vanilla), "--data", str(data), "--method", args.method,
         "--stages", str(args.stages), "--limit", str(args.limit), "--set", f"max_steps={args.steps}",
         "--out", str(inproc_out)],
        env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    inproc_s = time.perf_counter() - t0
    ratio = shell_s / inproc_s
    print(f"{args.stages}-stage run ({args.method}, {args.steps} steps/stage, limit {args.limit} docs/task)")
    print(f"  shell loop   {shell_s:7.1f} s")
    print(f"  in-process   {inproc_s:7.1f} s")
    print(f"  speed-up     {ratio:7.2f}x  (target >= 3x: {'PASS' if ratio >= 3 else 'FAIL'})")
    print(json.dumps({"bench": "continual", "shell_s": shell_s, "inprocess_s": inproc_s, "ratio": ratio}))


if __name__ == "__main__":
    main()
