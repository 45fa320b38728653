"""Collation of fine-tune batches: the per-row memo (``Collator``) vs encoding every batch from scratch.

Both sides collate the same shuffled epochs of the fine-tune set (image rows repeated as in the fine-tune)
into batches of 64; the memo side starts empty, so its first epoch pays for every row once. Prints seconds per
batch of both, the ratio (target ≥ 2×) and whether every batch is identical tensor for tensor. By default it
generates a small data set and builds the tiny model in a temp dir; ``--model`` / ``--data`` measure your own.

    .venv/bin/python benchmarks/bench_collate.py [--epochs 3] [--batch-size 64] [--vqa-repeat 5]

The last line is one JSON object with ``rows`` (for ``benchmarks/run_all.py``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from bench_inputs import add_input_args, data_and_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_input_args(parser)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--vqa-repeat", type=int, default=5)
    args = parser.parse_args(argv)

    import torch

    with tempfile.TemporaryDirectory(prefix="icu_bench_collate_") as tmp:
        n_rows, plain, memo, t_plain, t_memo = _measure(args, Path(tmp))

    identical = all(
        p.keys() == m.keys() and all(torch.equal(p[k], m[k]) for k in p)
        for p, m in zip(plain, memo, strict=True)
    )
    n = len(plain)
    ratio = t_plain / t_memo
    print(f"{n} batches of {args.batch_size} ({n_rows} rows per epoch, {args.epochs} epochs)")
    print(f"encode every batch: {1000 * t_plain / n:7.1f} ms/batch")
    print(f"per-row memo:       {1000 * t_memo / n:7.1f} ms/batch (first epoch included)")
    print(f"ratio:              {ratio:.2f}x (target >= 2x); identical batches: {identical}")
    rows = [
        {
            "name": "collate memo vs encode",
            "measured": f"{ratio:.2f}x",
            "target": ">= 2x",
            "pass": ratio >= 2,
        },
        {"name": "collate memo identical", "measured": str(identical), "target": "True", "pass": identical},
    ]
    print(
        json.dumps(
            {"benchmark": "collate", "plain_s": round(t_plain, 3), "memo_s": round(t_memo, 3), "rows": rows}
        )
    )
    return 0 if identical else 1


def _measure(args: argparse.Namespace, tmp: Path):
    """Collate the same batches both ways: (rows per epoch, plain batches, memo batches, plain s, memo s)."""
    from icu_tasks.data.dataset import open_data
    from icu_unlearn.models.loading import load_base
    from icu_unlearn.training.data import Collator, finetune_examples
    from icu_unlearn.training.row_encodings import encode_examples

    data_dir, model_dir = data_and_model(args.data, args.model, tmp, profiles=18)
    _, processor = load_base(model_dir, "cpu", "float32")
    examples = finetune_examples(open_data(data_dir), vqa_repeat=args.vqa_repeat)
    batches = []
    for epoch in range(args.epochs):
        order = random.Random(epoch).sample(examples, len(examples))
        batches += [order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size)]

    encode_examples(processor, batches[0])  # warm-up: template rendering and token ids are memoised by encode
    start = time.perf_counter()
    plain = [encode_examples(processor, b) for b in batches]
    t_plain = time.perf_counter() - start
    collator = Collator(processor)
    start = time.perf_counter()
    memo = [collator.encode(b) for b in batches]
    return len(examples), plain, memo, t_plain, time.perf_counter() - start


if __name__ == "__main__":
    sys.exit(main())
