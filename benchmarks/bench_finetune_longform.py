"""Fine-tune step cost with the long-form rows on: the batch padded to one length vs its long rows padded apart.

The long-form summaries are several times longer than a QA row, and a random batch of the fine-tune nearly
always holds one, so padding the batch to one length pads every QA row to the summary's length.
``Collator(split_longform=True)`` (what ``finetune`` uses when it trains long-form rows) pads the long rows
apart and sums the token losses of both parts (:func:`icu_unlearn.methods.losses.nll_loss_parts`): the same batches,
the same loss and gradient, less compute. This script draws ``--batches`` random batches of the fine-tune's
examples, times a forward + backward pass of each both ways on the tiny model, side by side in one process,
and prints seconds per batch, padded tokens per batch, the largest loss difference and the ratios.

    .venv/bin/python benchmarks/bench_finetune_longform.py [--batches 8] [--batch-size 64] [--threads N]

By default the demo's scale (40 profiles, 4 tasks of 3) is generated in a temp dir. A JSON line comes last.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path


def _tokens(inputs: dict) -> int:
    parts = inputs.get("parts", [inputs])
    return sum(p["input_ids"].numel() for p in parts)


def measure(data_dir: Path, model_dir: Path, batches: int, batch_size: int) -> dict:
    """Seconds per forward + backward and padded tokens per batch, one padding vs long rows apart."""

    from icu_tasks.data.dataset import open_data
    from icu_unlearn.methods.base import StepContext
    from icu_unlearn.models import load_base
    from icu_unlearn.training.data import Collator, finetune_examples
    from icu_unlearn.training.loop import NLLObjective

    model, processor = load_base(model_dir, device="cpu")
    model.train()
    examples = finetune_examples(open_data(data_dir), vqa_repeat=3, longform=True)
    rng = random.Random(0)
    drawn = [rng.sample(examples, batch_size) for _ in range(batches)]
    ctx = StepContext(step=0, reference_logits=None)
    out = {}
    losses = {}
    for name, split in (("one_padding", False), ("apart", True)):
        collate = Collator(processor, split_longform=split)
        seconds, tokens, values = 0.0, 0, []
        for batch in drawn:
            inputs = collate(batch)
            tokens += _tokens(inputs)
            model.zero_grad()
            start = time.perf_counter()
            loss = NLLObjective().compute_loss(model, inputs, ctx)
            loss.backward()
            seconds += time.perf_counter() - start
            values.append(loss.item())
        out[f"{name}_s_per_batch"] = round(seconds / batches, 4)
        out[f"{name}_tokens_per_batch"] = round(tokens / batches, 1)
        losses[name] = values
    out["max_loss_diff"] = max(abs(a - b) for a, b in zip(*losses.values(), strict=True))
    out["speedup"] = round(out["one_padding_s_per_batch"] / out["apart_s_per_batch"], 2)
    out["token_ratio"] = round(out["one_padding_tokens_per_batch"] / out["apart_tokens_per_batch"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    import torch

    from icu_tasks.data.generate import generate
    from icu_unlearn.models.tiny import build_tiny_model, corpus_from_data

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="icu-bench-longform-") as tmp:
        data, tiny = Path(tmp) / "data", Path(tmp) / "tiny"
        generate(data, profiles=40, tasks=4, profiles_per_task=3, image_size=160, progress=False)
        build_tiny_model(tiny, corpus_from_data(data), seed=0)
        result = {"batches": args.batches, "batch_size": args.batch_size, "threads": torch.get_num_threads()}
        result.update(measure(data, tiny, args.batches, args.batch_size))
    for name in ("one_padding", "apart"):
        print(f"{name:12s}: {result[f'{name}_s_per_batch']:.3f} s per forward+backward, "
              f"{result[f'{name}_tokens_per_batch']:.0f} padded tokens per batch")  # fmt: skip
    print(f"long rows apart: {result['speedup']:.2f}x faster, {result['token_ratio']:.2f}x fewer tokens, "
          f"largest loss difference {result['max_loss_diff']:.1e}")  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
