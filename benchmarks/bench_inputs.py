"""What several benchmarks measure on: a data dir and a model dir, the user's or a small generated set and the
tiny model built for it (``--data`` / ``--model``; imported by the ``bench_*.py`` scripts, not a benchmark)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_input_args(parser: argparse.ArgumentParser) -> None:
    """``--model`` and ``--data``: what :func:`data_and_model` takes (default: build them)."""
    parser.add_argument("--model", type=Path, help="model dir (default: build the tiny model)")
    parser.add_argument("--data", type=Path, help="data dir (default: generate a small set)")


def data_and_model(data: Path | None, model: Path | None, tmp: Path, profiles: int) -> tuple[Path, Path]:
    """``(data dir, model dir)``: the given ones, or a generated set of ``profiles`` profiles (seed 0, 3 forget
    tasks of 2 profiles, 160-px images) and the tiny model for it (seed 0), built under ``tmp``."""
    if data is None:
        from icu_tasks.data.generate import generate

        data = tmp / "data"
        generate(
            data, seed=0, profiles=profiles, tasks=3, profiles_per_task=2, image_size=160, progress=False
        )
    if model is None:
        from icu_unlearn.models.tiny import build_tiny_model, corpus_from_data

        model = build_tiny_model(tmp / "tiny", corpus_from_data(data), seed=0)
    return data, model
