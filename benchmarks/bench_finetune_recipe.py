"""Fine-tune recipes side by side on the demo's data: steps, seconds and knowledge reached.

A recipe is a fine-tune (``FinetuneConfig`` fields) on a tiny model (``TinyConfig`` fields):

* ``default``: the library default fine-tune (a fixed number of steps) on the default four-layer tiny model;
* ``demo4``: the demo's fine-tune (``DEMO_FINETUNE`` of :mod:`icu_unlearn.cli.run`: stopping rule on) on the
  default four-layer tiny model (the model of ``icu-bench compare`` and the published comparison);
* ``demo``: what ``icu-bench demo`` runs, ``DEMO_FINETUNE`` on ``DEMO_TINY`` (two decoder layers).

This script fine-tunes on the demo's data (40 profiles, 4 tasks of 3; the data and each tiny model are built
once into ``--work`` and reused) with the recipes asked for, in turn, then scores every saved model the same way:
teacher-forced exact match of every split x view group (:func:`icu_unlearn.training.knowledge.group_accuracy`)
and of the long-form summaries, with their mean answer NLL (nats/token). It prints one line per recipe and a
JSON line last.

    .venv/bin/python benchmarks/bench_finetune_recipe.py [--recipe demo4,demo] [--work DIR] [--threads N]
        [--scale demo|small] [--set KEY=VALUE ...]

``--scale small`` uses the test suite's small data set (18 profiles, 3 tasks of 2) instead of the demo's;
``--set`` overrides a ``FinetuneConfig`` field in every recipe measured (repeatable), e.g. the test fixture's
vanilla model is ``--recipe demo --scale small --set stop_at_accuracy=0.9 --set longform=false`` (its cap
aside). A recipe whose stopping rule is not met within ``max_steps`` is reported as not reached, with its
scores.

``seconds`` is the training loop alone (stopping-rule checks included), as ``finetune.json`` records it; the
recipes run one after the other in one process, so their seconds are side by side.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

DEFAULT_WORK = Path(tempfile.gettempdir()) / "icu-bench-finetune-recipe"


def recipes() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Recipe name → (``FinetuneConfig`` keyword arguments, ``TinyConfig`` keyword arguments)."""
    from icu_unlearn.cli.run import DEMO_FINETUNE, DEMO_TINY

    return {
        "default": ({}, {}),
        "demo4": (dict(DEMO_FINETUNE), {}),
        "demo": (dict(DEMO_FINETUNE), dict(DEMO_TINY)),
    }


#: The test suite's small data set (``tests/fixtures_data.py``).
SMALL_SCALE = {"profiles": 18, "tasks": 3, "profiles_per_task": 2, "image_size": 160}


def inputs(work: Path, scale: str = "demo", tiny_fields: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """The data (demo's or the suite's small scale) and a tiny model (``TinyConfig(**tiny_fields)``) under
    ``work/scale``, each built on the first call as ``icu-bench demo`` builds them."""
    from icu_unlearn.cli.run import DEMO_SCALE

    work = work / scale
    name = "-".join(f"{k}={v}" for k, v in sorted((tiny_fields or {}).items())) or "default"
    data, tiny = work / "data", work / f"tiny-{name}"
    if not (data / "manifest.json").is_file():
        from icu_tasks.data.generate import generate

        sizes = DEMO_SCALE if scale == "demo" else SMALL_SCALE
        generate(data, seed=0, workers=1, progress=False, overwrite=data.exists(), **sizes)
    if not (tiny / "config.json").is_file():
        from icu_unlearn.models.tiny import TinyConfig, build_tiny_model, corpus_from_data

        build_tiny_model(tiny, corpus_from_data(data), seed=0, config=TinyConfig(**(tiny_fields or {})))
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


def measure(name: str, work: Path, scale: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fine-tune with recipe ``name`` (plus ``overrides``) into a temporary dir; its steps, training seconds
    and knowledge, or ``reached: False`` and the error when the stopping rule was not met by the cap."""
    import time

    from icu_tasks.errors import TrainingError
    from icu_unlearn.training.finetune import FinetuneConfig, finetune

    fields, tiny_fields = recipes()[name]
    data, tiny = inputs(work, scale, tiny_fields)
    config = FinetuneConfig(**(fields | (overrides or {})))
    head = {"recipe": name, "tiny": tiny_fields, "overrides": overrides or {}}
    with tempfile.TemporaryDirectory(prefix="icu-bench-recipe-") as tmp:
        start = time.perf_counter()
        try:
            out = finetune(tiny, data, Path(tmp) / "vanilla", config, device="cpu")
        except TrainingError as err:
            return {**head, "reached": False, "steps": config.max_steps,
                    "seconds": time.perf_counter() - start, "error": str(err)}  # fmt: skip
        record = json.loads((out / "finetune.json").read_text())
        known = knowledge(out, data)
    groups = {k: v for k, v in known.items() if "/" in k}
    return {
        **head,
        "reached": True,
        "steps": record["steps"],
        "seconds": record["train_seconds"],
        "min_group": min(groups.values()),
        **known,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--recipe",
        default="demo4,demo",
        help="comma-separated recipes: default, demo4, demo (default: demo4,demo)",
    )
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="where data + tiny model are kept")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--scale", choices=("demo", "small"), default="demo", help="the data set")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="FinetuneConfig field"
    )
    args = parser.parse_args()
    from icu_tasks.errors import ConfigError
    from icu_unlearn.cli.args import parse_sets

    try:
        overrides = parse_sets(args.set)
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    names = args.recipe.split(",")
    if unknown := sorted(set(names) - set(recipes())):
        raise SystemExit(f"error: unknown recipe {unknown}; choose from {sorted(recipes())}")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    results = [measure(n, args.work, args.scale, overrides) for n in names]
    for r in results:
        print(f"{r['recipe']:8s} {r['overrides']}: {_summary(r)}")
    rows = [
        {"name": f"finetune {r['recipe']} {r['overrides']}", "measured": _summary(r).split(";")[0],
         "target": "", "pass": None}
        for r in results
    ]  # fmt: skip
    print(
        json.dumps(
            {"threads": torch.get_num_threads(), "scale": args.scale, "results": results, "rows": rows}
        )
    )


def _summary(r: dict[str, Any]) -> str:
    if not r["reached"]:
        return f"NOT reached in {r['steps']} steps ({r['seconds']:.0f} s); {r['error']}"
    known = ", ".join(f"{k} {v:.2f}" for k, v in r.items() if "/" in k or k.startswith("longform"))
    return f"{r['steps']} steps, {r['seconds']:.0f} s, min group {r['min_group']:.2f}; {known}"


if __name__ == "__main__":
    main()
