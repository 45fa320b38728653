"""Fine-tune speed with the long-form rows on: long rows batched apart vs mixed into random batches.

The long-form summaries are several times longer than a QA row. In the Trainer's shuffled order nearly every
batch holds one and is padded to its length; :class:`icu_unlearn.training_data.LongRowsApartSampler` (what
the fine-tune uses whenever long-form rows are trained) keeps them in batches of their own. This script runs
the same fine-tune (the project's recipe, ``--steps`` steps, same seed, same threads) both ways, side by side
in one process, and prints seconds per step, padded tokens per batch and their ratios. The baseline turns
the data set's own order off, which is the only difference between the two runs.

    .venv/bin/python benchmarks/bench_finetune_batching.py [--steps 40] [--profiles 40] [--threads N]

By default the demo's scale (40 profiles, 4 tasks of 3) is generated in a temp dir. A JSON line comes last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def _padded_tokens(data_dir: Path, model_dir: Path, batch: int, own_order: bool, batches: int = 30) -> float:
    """Mean padded sequence length × batch size over the first ``batches`` batches of one epoch order."""
    from icu_tasks.data.dataset import open_data
    from icu_unlearn.models import load_base
    from icu_unlearn.training_data import Collator, ExampleDataset, finetune_examples

    _, processor = load_base(model_dir, device="cpu")
    dataset = ExampleDataset(finetune_examples(open_data(data_dir), vqa_repeat=3, longform=True))
    sampler = dataset.sampler(batch, seed=0) if own_order else None
    if sampler is None:
        import torch

        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0)).tolist()
    else:
        order = list(sampler)
    collate = Collator(processor)
    sizes = []
    for start in range(0, min(len(order), batches * batch), batch):
        ids = collate([dataset[i] for i in order[start : start + batch]])["input_ids"]
        sizes.append(ids.shape[0] * ids.shape[1])
    return statistics.mean(sizes)


def _time_finetune(data_dir: Path, model_dir: Path, out: Path, steps: int, own_order: bool) -> float:
    """Seconds per optimizer step of ``steps`` fine-tune steps (long-form rows on)."""
    from icu_unlearn import training_data
    from icu_unlearn.finetune import FinetuneConfig, finetune

    original = training_data.ExampleDataset.sampler
    if not own_order:
        training_data.ExampleDataset.sampler = None  # the Trainer's shuffled order
    try:
        cfg = FinetuneConfig(max_steps=steps, longform=True, warmup_steps=0, lr_scheduler="constant")
        start = time.perf_counter()
        finetune(model_dir, data_dir, out, cfg, device="cpu")
        return (time.perf_counter() - start) / steps
    finally:
        training_data.ExampleDataset.sampler = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--profiles", type=int, default=40)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    import torch

    from icu_tasks.data.generate import generate
    from icu_unlearn.models.tiny import build_tiny_model, corpus_from_data

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="icu-bench-batching-") as tmp:
        work = Path(tmp)
        data, tiny = work / "data", work / "tiny"
        generate(data, profiles=args.profiles, tasks=4, profiles_per_task=3, image_size=160, progress=False)
        build_tiny_model(tiny, corpus_from_data(data), seed=0)
        result = {"steps": args.steps, "profiles": args.profiles, "threads": torch.get_num_threads()}
        for name, own in (("mixed", False), ("apart", True)):
            result[f"{name}_tokens_per_batch"] = round(_padded_tokens(data, tiny, 64, own), 1)
            result[f"{name}_s_per_step"] = round(_time_finetune(data, tiny, work / name, args.steps, own), 3)
            print(f"{name:6s}: {result[f'{name}_s_per_step']:.3f} s/step, "
                  f"{result[f'{name}_tokens_per_batch']:.0f} padded tokens per batch", flush=True)  # fmt: skip
    result["speedup"] = round(result["mixed_s_per_step"] / result["apart_s_per_step"], 2)
    result["token_ratio"] = round(result["mixed_tokens_per_batch"] / result["apart_tokens_per_batch"], 2)
    print(
        f"long rows apart: {result['speedup']:.2f}x faster per step, {result['token_ratio']:.2f}x fewer tokens"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
