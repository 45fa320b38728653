"""The demo's fine-tune recipe vs the library default on the demo's data: steps, seconds and knowledge reached.

``icu-bench demo`` fine-tunes the tiny model with ``DEMO_FINETUNE`` (:mod:`icu_unlearn.cli.run`); the library
default (``FinetuneConfig()``) trains a fixed number of steps. This script fine-tunes the demo's tiny model on the
demo's data (40 profiles, 4 tasks of 3; both generated once into ``--work`` and reused) with one recipe or both,
then scores the saved model the same way for both recipes: teacher-forced exact match of every split x view group
(:func:`icu_unlearn.training.knowledge.group_accuracy`) and of the long-form summaries, with their mean answer NLL
(nats/token). It prints one line per recipe and a JSON line last.

    .venv/bin/python benchmarks/bench_finetune_recipe.py [--recipe demo|default|both] [--work DIR] [--threads N]

Wall time of a whole run is best taken from outside, one recipe per process, the two in turn (A B A B), e.g.
with ``/usr/bin/time -v`` around ``--recipe demo`` and ``--recipe default``; ``seconds`` below is the training
loop alone (stopping-rule checks included), as ``finetune.json`` records it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

DEFAULT_WORK = Path(tempfile.gettempdir()) / "icu-bench-finetune-recipe"


def recipes() -> dict[str, dict[str, Any]]:
    """Recipe name → ``FinetuneConfig`` keyword arguments."""
    from icu_unlearn.cli.run import DEMO_FINETUNE

    return {"default": {}, "demo": dict(DEMO_FINETUNE)}


def inputs(work: Path) -> tuple[Path, Path]:
    """The demo's data and tiny model under ``work`` (built on the first call, as ``icu-bench demo`` does)."""
    from icu_unlearn.cli.run import DEMO_SCALE

    data, tiny = work / "data", work / "tiny"
    if not (data / "manifest.json").is_file():
        from icu_tasks.data.generate import generate

        generate(data, seed=0, workers=1, progress=False, overwrite=data.exists(), **DEMO_SCALE)
    if not (tiny / "config.json").is_file():
        from icu_unlearn.models.tiny import build_tiny_model, corpus_from_data

        build_tiny_model(tiny, corpus_from_data(data), seed=0)
    return data, tiny


def knowledge(model_dir: Path, data_dir: Path) -> dict[str, float]:
    """Teacher-forced exact match per split x view group, ``longform`` exact match and ``longform_nll``."""
    from icu_tasks.data.dataset import open_data
    from icu_tasks.data.schema import KNOWN_SPLITS
    from icu_unlearn.models import load_base
    from icu_unlearn.training.data import Collator, examples_from_rows
    from icu_unlearn.training.knowledge import accuracy, answer_scores, check_groups, group_accuracy, mean_nll

    data = open_data(data_dir)
    model, processor = load_base(model_dir, device="cpu")
    collator = Collator(processor)
    out = group_accuracy(model, collator, check_groups(data))
    rows = [r for r in data.longform() if r["split"] in KNOWN_SPLITS]
    scores = answer_scores(model, collator, examples_from_rows(data, rows), batch_size=8)
    out["longform"] = accuracy(scores)
    out["longform_nll"] = mean_nll(scores)
    return {k: round(v, 4) for k, v in out.items()}


def measure(name: str, data: Path, tiny: Path) -> dict[str, Any]:
    """Fine-tune with recipe ``name`` into a temporary dir; its steps, training seconds and knowledge."""
    from icu_unlearn.training.finetune import FinetuneConfig, finetune

    with tempfile.TemporaryDirectory(prefix="icu-bench-recipe-") as tmp:
        out = finetune(tiny, data, Path(tmp) / "vanilla", FinetuneConfig(**recipes()[name]), device="cpu")
        record = json.loads((out / "finetune.json").read_text())
        known = knowledge(out, data)
    groups = {k: v for k, v in known.items() if "/" in k}
    return {
        "recipe": name,
        "steps": record["steps"],
        "seconds": record["train_seconds"],
        "min_group": min(groups.values()),
        **known,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", choices=("demo", "default", "both"), default="both")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="where data + tiny model are kept")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    data, tiny = inputs(args.work)
    names = ["default", "demo"] if args.recipe == "both" else [args.recipe]
    results = [measure(n, data, tiny) for n in names]
    for r in results:
        known = ", ".join(f"{k} {v:.2f}" for k, v in r.items() if "/" in k or k.startswith("longform"))
        print(
            f"{r['recipe']:8s}: {r['steps']} steps, {r['seconds']:.0f} s; min group {r['min_group']:.2f}; {known}"
        )
    rows = [
        {"name": f"finetune {r['recipe']}", "measured": f"{r['steps']} steps {r['seconds']:.0f} s, "
         f"min group {r['min_group']:.2f}", "target": "", "pass": None}
        for r in results
    ]  # fmt: skip
    print(json.dumps({"threads": torch.get_num_threads(), "results": results, "rows": rows}))


if __name__ == "__main__":
    main()
