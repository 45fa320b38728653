"""Throughput of ``icu_hf``'s ``generate_until`` at batch size 1 vs 8 on the same requests.

Prints samples/s for both, the ratio (target ≥ 2×) and whether the answers are identical. By default it
generates a small data set and builds the tiny model in a temp dir; pass ``--model`` / ``--data`` to measure
your own (e.g. the fine-tuned vanilla model, whose answers stop at EOS).

    .venv/bin/python benchmarks/bench_generate_batch.py [--samples 64] [--max-new-tokens 16] [--threads N]

On a machine whose cores are shared with other jobs, use ``--threads 1``: torch's intra-op threads then wait
on each other and every step costs ~10x more, which hides what batching saves. The last line is one JSON
object (for ``benchmarks/run_all.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from bench_inputs import add_input_args, data_and_model


def _requests(data_dir: Path, n: int):
    from lmms_eval.api.instance import Instance

    from icu_tasks.data.dataset import open_data
    from icu_tasks.harness.prompts import question_text

    data = open_data(data_dir)
    vqa, qa = data.rows(view="vqa"), data.rows(view="qa")
    rows = [r for pair in zip(vqa, qa, strict=False) for r in pair][:n]
    for row in rows:
        row["_image"] = data.load_image(row["image"]) if row["image"] else None

    def doc_to_visual(doc):
        return [doc["_image"]] if doc["_image"] is not None else []

    return rows, [
        Instance(
            request_type="generate_until",
            arguments=(question_text(r), {"until": ["\n"]}, doc_to_visual, i, "bench", "test"),
            idx=0,
            metadata={"task": "bench", "doc_id": i, "repeats": 1},
        )
        for i, r in enumerate(rows)
    ]


def _timed(lm, requests, batch_size: int) -> tuple[float, list[str]]:
    lm.batch_size_per_gpu = batch_size
    start = time.perf_counter()
    answers = lm.generate_until(requests)
    return time.perf_counter() - start, answers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_input_args(parser)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from icu_unlearn.scoring.icu_hf import IcuHF

    with tempfile.TemporaryDirectory(prefix="icu_bench_batch_") as tmp:
        data_dir, model_dir = data_and_model(args.data, args.model, Path(tmp), profiles=24)
        rows, requests = _requests(data_dir, args.samples)
        lm = IcuHF(
            pretrained=str(model_dir), max_new_tokens=args.max_new_tokens, device="cpu", dtype="float32"
        )
        lm.task_dict = {"bench": {"test": rows}}
        _timed(lm, requests[: args.batch_size], args.batch_size)  # warm-up
        t1, a1 = _timed(lm, requests, 1)
        tb, ab = _timed(lm, requests, args.batch_size)

    n = len(requests)
    print(
        f"requests: {n} ({sum(r['_image'] is not None for r in rows)} with an image), "
        f"max_new_tokens={args.max_new_tokens}"
    )
    print(f"batch 1:  {n / t1:7.2f} samples/s ({t1:.2f} s)")
    print(f"batch {args.batch_size}:  {n / tb:7.2f} samples/s ({tb:.2f} s)")
    print(f"ratio:    {t1 / tb:.2f}x (target >= 2x); identical answers: {a1 == ab}")
    summary = {"benchmark": "generate_batch", "requests": n, "batch_size": args.batch_size}
    summary |= {
        "batch1_s": round(t1, 3),
        "batched_s": round(tb, 3),
        "ratio": round(t1 / tb, 2),
        "identical": a1 == ab,
    }
    print(json.dumps(summary))  # last line: for benchmarks/run_all.py
    return 0 if a1 == ab else 1


if __name__ == "__main__":
    sys.exit(main())
