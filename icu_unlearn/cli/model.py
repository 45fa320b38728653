"""``icu-bench model build-tiny``: build an offline tiny test model, LLaVA (:mod:`icu_unlearn.models.tiny`) or
Qwen2-VL (:mod:`icu_unlearn.models.tiny_qwen2vl`)."""

from __future__ import annotations

import argparse
import json
import time

#: ``--arch`` → (module, builder function): the tiny models with the architectures of the real ones.
ARCHS = {
    "llava": ("icu_unlearn.models.tiny", "build_tiny_model"),
    "qwen2vl": ("icu_unlearn.models.tiny_qwen2vl", "build_tiny_qwen2vl"),
}


def register(subparsers) -> None:
    """Add ``model build-tiny`` to the ``icu-bench`` parser."""
    model = subparsers.add_parser(
        "model",
        help="build the tiny test models",
        description="Build the tiny, random-weight test models (LLaVA and Qwen2-VL architectures).",
    )
    sub = model.add_subparsers(dest="model_command", metavar="SUBCOMMAND", required=True)
    build = sub.add_parser(
        "build-tiny",
        help="build a tiny test model (random weights, tokenizer trained on the benchmark text)",
        description="Build a tiny model with random weights and a tokenizer trained on the benchmark's text: "
        "the offline stand-in of LLaVA-1.5 (--arch llava) or Qwen2-VL (--arch qwen2vl) for tests and the demo.",
    )
    build.add_argument("--out", required=True, help="output model dir (must not exist or be empty)")
    build.add_argument(
        "--data", default=None, help="data dir whose text trains the tokenizer (default: a built-in corpus)"
    )
    build.add_argument("--arch", choices=sorted(ARCHS), default="llava", help="architecture (default llava)")
    build.add_argument("--seed", type=int, default=0, help="seed of the weight initialisation (default 0)")
    build.add_argument("--overwrite", action="store_true", help="replace an existing --out dir")
    build.set_defaults(func=build_tiny)


def build_tiny(args: argparse.Namespace) -> int:
    """Run ``model build-tiny``; prints where the model went, its size and the build time."""
    import importlib

    from icu_unlearn.models.tiny import check_out_dir, corpus_from_data

    start = time.perf_counter()
    check_out_dir(args.out, args.overwrite)  # fail before reading the data
    texts = corpus_from_data(args.data) if args.data else None
    module, function = ARCHS[args.arch]
    build = getattr(importlib.import_module(module), function)
    out = build(args.out, texts, seed=args.seed, overwrite=args.overwrite)
    info = json.loads((out / "tiny_model.json").read_text())
    print(
        f"tiny model ({args.arch}): {out} ({info['params']:,} parameters, {time.perf_counter() - start:.1f} s)"
    )
    return 0
