"""Does long-form fluency separate a fluent model from a collapsed one? Vanilla vs one aggressive GA stage.

Fine-tunes the tiny model on a small data set with the long-form rows on, runs one gradient-ascent stage on
forget task 1 with a large learning rate (the classic collapse), and prints, for both models, the long-form
scores of the forget and retain-eval summaries (the ``icu_longform`` metrics, same decoding: greedy, 128 new
tokens, cut at a newline): n-gram entropy (bits), 3-gram repetition rate, leakage (mean ROUGE-L recall of
the private values), plus a few generations.

    python benchmarks/bench_longform.py [--work DIR] [--steps 600] [--ga-lr 1e-2] [--ga-steps 30]

CPU, 1 thread: the fine-tune dominates (minutes per 100 steps at batch 32). A JSON line comes last.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def prepare(work: Path, steps: int) -> tuple[Path, Path]:
    from icu_tasks.data.generate import generate
    from icu_unlearn.models.tiny import build_tiny_model, corpus_from_data
    from icu_unlearn.training.finetune import FinetuneConfig, finetune

    data, tiny, vanilla = work / "data", work / "tiny", work / "vanilla"
    if not (data / "manifest.json").is_file():
        generate(data, profiles=12, tasks=2, profiles_per_task=2, image_size=96, progress=False)
    if not (tiny / "config.json").is_file():
        build_tiny_model(tiny, corpus_from_data(data))
    if not (vanilla / "config.json").is_file():
        cfg = FinetuneConfig(max_steps=steps, batch_size=32, longform=True, vqa_repeat=1)
        finetune(tiny, data, vanilla, cfg, device="cpu")
    return data, vanilla


def scores(model, processor, rows: list[dict]) -> tuple[dict[str, float], list[str]]:
    """Mean long-form scores of ``rows`` (forget and retain-eval) and the generations."""
    from icu_tasks.harness.longform import score_longform
    from icu_tasks.harness.prompts import question_text
    from icu_unlearn.models.inference import generate_texts

    texts = generate_texts(
        model,
        processor,
        [question_text(r) for r in rows],
        None,
        max_new_tokens=128,
        batch_size=8,
        until=["\n"],
    )
    per = [score_longform(t, r["values"]) for t, r in zip(texts, rows, strict=True)]
    out = {
        "entropy": statistics.fmean(p["longform_entropy"] for p in per),
        "repetition": statistics.fmean(p["longform_repetition"] for p in per),
    }
    for name, split in (("forget", "forget"), ("retain", "retain_eval")):
        vals = [p["longform_leakage"] for p, r in zip(per, rows, strict=True) if r["split"] == split]
        out[f"leakage_{name}"] = statistics.fmean(vals) if vals else float("nan")
    return out, texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/icu_bench_longform")
    ap.add_argument("--steps", type=int, default=600, help="fine-tune steps (batch 32)")
    ap.add_argument("--ga-lr", type=float, default=1e-2, help="learning rate of the collapsing GA stage")
    ap.add_argument("--ga-steps", type=int, default=30)
    args = ap.parse_args()

    from icu_tasks.continual.fluency import ngram_entropy
    from icu_tasks.data.dataset import open_data
    from icu_unlearn.methods import build_method
    from icu_unlearn.models import load_base
    from icu_unlearn.models.loading import load_stage
    from icu_unlearn.training.unlearn import run_stage

    work = Path(args.work)
    data_dir, vanilla = prepare(work, args.steps)
    data = open_data(data_dir)
    rows = data.longform(split="forget") + data.longform(split="retain_eval")
    model, processor = load_base(vanilla, device="cpu")
    model.eval()
    results = {"vanilla": scores(model, processor, rows)}
    method = build_method("ga", learning_rate=args.ga_lr, max_steps=args.ga_steps)
    run_stage(method, vanilla, data_dir, 1, work / "run", overwrite=True, device="cpu")
    model, processor = load_base(vanilla, device="cpu")
    model = load_stage(model, work / "run" / "stage_1")
    model.eval()
    results["ga_collapsed"] = scores(model, processor, rows)

    print(f"{'model':<14} {'entropy':>8} {'repetition':>11} {'leak forget':>12} {'leak retain':>12}")
    for name, (s, _) in results.items():
        print(
            f"{name:<14} {s['entropy']:8.3f} {s['repetition']:11.3f} {s['leakage_forget']:12.3f} "
            f"{s['leakage_retain']:12.3f}"
        )
    gold = statistics.fmean(ngram_entropy(r["answer"]) for r in rows)
    print(f"gold answers: entropy {gold:.3f}")
    for name, (_, texts) in results.items():
        print(f"-- {name}: {rows[0]['question']!r}\n   {texts[0]!r}")
    print(json.dumps({"bench": "longform", **{n: s for n, (s, _) in results.items()}, "gold_entropy": gold}))


if __name__ == "__main__":
    main()
