"""Every unlearning method, two stages each, on one fine-tuned model: forget / retain accuracy and wall time.

    python benchmarks/method_table.py --base runs/demo/vanilla --data runs/demo/data [--stages 2] [--work DIR]

For each registered method: stage 1 forgets forget task 1 starting from the vanilla model, stage 2 forgets task
2 starting from stage 1 (cumulative). After each stage, exact-match accuracy (greedy, as the lmms-eval generate
tasks score it) of forget task 1 and of retain-eval, per view (VQA / QA). Prints a markdown table and a JSON
line last. Defaults of every method are used (the hyper-parameters recorded in each stage.json).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path


def accuracy(model, processor, data, task: int = 1) -> dict[str, float]:
    """Exact match on forget task ``task`` and on retain-eval, per view."""
    from icu_unlearn.training.data import examples_from_rows, quick_accuracy

    out = {}
    for view in ("vqa", "qa"):
        out[f"forget_{view}"] = quick_accuracy(
            model, processor, examples_from_rows(data, data.forget(task, view=view))
        )
        out[f"retain_{view}"] = quick_accuracy(
            model, processor, examples_from_rows(data, data.retain("eval", view=view))
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the vanilla (fine-tuned) model dir")
    ap.add_argument("--data", required=True, help="the data dir it was fine-tuned on")
    ap.add_argument("--stages", type=int, default=2)
    ap.add_argument("--methods", default="", help="comma-separated subset (default: all registered)")
    ap.add_argument("--work", default="/tmp/icu_bench_methods")
    args = ap.parse_args()

    from icu_tasks.data.dataset import open_data
    from icu_unlearn.methods import build_method, list_methods
    from icu_unlearn.models import load_base
    from icu_unlearn.training.unlearn import run_stage

    data = open_data(args.data)
    model, processor = load_base(args.base, device="cpu")
    rows = {"vanilla": {0: accuracy(model, processor, data)}}
    seconds: dict[str, float] = {}
    for name in args.methods.split(",") if args.methods else list_methods():
        run = Path(args.work) / name
        shutil.rmtree(run, ignore_errors=True)
        rows[name], seconds[name] = {}, 0.0
        for k in range(1, args.stages + 1):
            t0 = time.perf_counter()
            result = run_stage(build_method(name), args.base, args.data, k, run, device="cpu")
            seconds[name] += time.perf_counter() - t0
            rows[name][k] = accuracy(result.model, result.processor, data)
            print(f"{name} stage {k}: {rows[name][k]} ({seconds[name]:.0f} s)", flush=True)

    s0 = rows["vanilla"][0]
    cols = ["forget_vqa", "forget_qa", "retain_vqa", "retain_qa"]
    print("\n| method | " + " | ".join(f"{c} (s0→" + "→".join(f"s{k}" for k in range(1, args.stages + 1)) + ")"
                                       for c in cols) + " | train+stage s |")  # fmt: skip
    print("|---" * (len(cols) + 2) + "|")
    for name, by_stage in rows.items():
        if name == "vanilla":
            continue
        cells = [
            " → ".join(f"{v:.2f}" for v in [s0[c], *(by_stage[k][c] for k in range(1, args.stages + 1))])
            for c in cols
        ]
        print(f"| {name} | " + " | ".join(cells) + f" | {seconds[name]:.0f} |")
    print(json.dumps({"bench": "methods", "stage0": s0, "rows": rows, "seconds": seconds}))


if __name__ == "__main__":
    main()
