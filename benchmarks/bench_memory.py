"""Peak memory (RSS) of fine-tune, one unlearning stage and lmms-eval scoring on the tiny model.

Each step runs as its own subprocess — the real CLIs: ``icu-bench finetune``, ``icu-bench unlearn`` and
``lmms-eval --model icu_hf`` — and its peak resident set size is read from the kernel's accounting of that
child (``os.wait4``'s ``ru_maxrss``), so nothing is sampled and nothing is missed. The data set (24 profiles)
and the tiny model are built first and not measured. Informational (no target): the numbers say what a laptop
or a CI runner needs for the demo and the tests.

    .venv/bin/python benchmarks/bench_memory.py [--quick] [--steps 5] [--limit 32] [--work DIR]

Prints one line per step and, last, one JSON object (for ``benchmarks/run_all.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent


def measure(cmd: list[str], log: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run ``cmd`` to the end (output to ``log``); its wall time and peak RSS. A failure raises with the log tail."""
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:])
        raise RuntimeError(f"{' '.join(cmd[:3])} ... exited {proc.returncode}:\n{tail}")
    return {"peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "seconds": round(seconds, 1)}  # ru_maxrss: KiB


def prepare(work: Path, env: dict[str, str]) -> tuple[Path, Path]:
    """The small data set and the tiny model under ``work`` (reused when present)."""
    data, tiny = work / "data", work / "tiny"
    cli = str(BIN / "icu-bench")
    if not (data / "manifest.json").is_file():
        scale = ["--profiles", "24", "--tasks", "3", "--profiles-per-task", "2", "--image-size", "160"]
        generate = [cli, "data", "generate", "--out", str(data), *scale, "--quiet"]
        subprocess.run(generate, env=env, check=True, stdout=subprocess.DEVNULL)
    if not (tiny / "config.json").is_file():
        subprocess.run(
            [cli, "model", "build-tiny", "--out", str(tiny), "--data", str(data)],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return data, tiny


def run(work: Path, steps: int, limit: int, method: str) -> dict[str, dict[str, Any]]:
    """Measure the three steps in ``work``; returns step name → peak RSS and wall time."""
    from icu_tasks.paths import task_yamls_dir

    env = os.environ | {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    data, tiny = prepare(work, env)
    vanilla, run_dir = work / "vanilla", work / "run"
    cli = str(BIN / "icu-bench")
    cmds = {
        "finetune": [cli, "finetune", "--model", str(tiny), "--data", str(data), "--out", str(vanilla)]
        + ["--max-steps", str(steps), "--device", "cpu", "--overwrite"],
        "unlearn": [cli, "unlearn", "--method", method, "--base", str(vanilla), "--data", str(data)]
        + [
            "--stage",
            "1",
            "--out",
            str(run_dir),
            "--max-steps",
            str(steps),
            "--device",
            "cpu",
            "--overwrite",
        ],
        "scoring": [str(BIN / "lmms-eval"), "--include_path", str(task_yamls_dir()), "--tasks", "icu"]
        + ["--model", "icu_hf", "--model_args", f"pretrained={vanilla},adapter={run_dir}/stage_1,device=cpu"]
        + ["--batch_size", "16", "--limit", str(limit), "--output_path", str(work / "eval")],
    }
    results = {}
    for name, cmd in cmds.items():
        results[name] = measure(cmd, work / f"{name}.log", env | {"ICU_DATA_DIR": str(data)})
        print(
            f"{name:<9} peak RSS {results[name]['peak_rss_mib']:8.1f} MiB  ({results[name]['seconds']:.1f} s)"
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 training steps, 8 docs per task")
    parser.add_argument("--steps", type=int, default=5, help="optimizer steps of fine-tune and unlearn (5)")
    parser.add_argument("--limit", type=int, default=32, help="docs per task scored by lmms-eval (32)")
    parser.add_argument(
        "--method", default="npo_diff", help="unlearning method (default npo_diff, the demo's)"
    )
    parser.add_argument("--work", type=Path, help="work dir (default: a temp dir, deleted at the end)")
    args = parser.parse_args(argv)
    steps, limit = (2, 8) if args.quick else (args.steps, args.limit)

    print(
        f"tiny model, 24 profiles: {steps} steps (fine-tune batch 64, {args.method}), scoring limit {limit}"
    )
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
        results = run(args.work, steps, limit, args.method)
    else:
        with tempfile.TemporaryDirectory(prefix="icu-bench-memory-") as tmp:
            results = run(Path(tmp), steps, limit, args.method)
    labels = {"finetune": "fine-tune", "unlearn": f"unlearn ({args.method})", "scoring": "lmms-eval scoring"}
    rows = [
        {
            "name": f"peak RSS, {labels[name]}, tiny model",
            "measured": f"{r['peak_rss_mib']:.0f} MiB",
            "target": "info",
            "pass": None,
        }
        for name, r in results.items()
    ]
    summary = {"benchmark": "memory", "steps": steps, "limit": limit, "method": args.method}
    print(json.dumps(summary | {"results": results, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
