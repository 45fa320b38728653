"""``icu-bench model build-tiny``: build the offline tiny LLaVA model (see :mod:`icu_unlearn.models.tiny`)."""

from __future__ import annotations

import argparse
import time


def register(subparsers) -> None:
    """Add ``model build-tiny`` to the ``icu-bench`` parser."""
    model = subparsers.add_parser("model", help="build or inspect models")
    sub = model.add_subparsers(dest="model_command", metavar="SUBCOMMAND", required=True)
    build = sub.add_parser(
        "build-tiny",
        help="build the tiny LLaVA test model (random weights, tokenizer trained on the benchmark text)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    build.add_argument("--out", required=True, help="output model dir (must not exist or be empty)")
    build.add_argument(
        "--data", default=None, help="data dir whose text trains the tokenizer (default: a built-in corpus)"
    )
    build.add_argument("--seed", type=int, default=0, help="seed of the weight initialisation")
    build.add_argument("--overwrite", action="store_true", help="replace an existing --out dir")
    build.set_defaults(func=build_tiny)


def build_tiny(args: argparse.Namespace) -> int:
    """Run ``model build-tiny``; prints where the model went, its size and the build time."""
    from icu_unlearn.models.tiny import build_tiny_model, check_out_dir, corpus_from_data

    start = time.perf_counter()
    check_out_dir(args.out, args.overwrite)  # fail before reading the data
    texts = corpus_from_data(args.data) if args.data else None
    out = build_tiny_model(args.out, texts, seed=args.seed, overwrite=args.overwrite)
    import json

    info = json.loads((out / "tiny_model.json").read_text())
    print(f"tiny model: {out} ({info['params']:,} parameters, {time.perf_counter() - start:.1f} s)")
    return 0
