"""``icu-bench data generate`` and ``icu-bench data validate``: make and check an ICU-Bench data dir."""

from __future__ import annotations

import argparse
import os


def _summary_lines(manifest: dict) -> list[str]:
    c = manifest["counts"]
    by_split = ", ".join(f"{k} {v}" for k, v in c["rows_by_split"].items())
    return [
        f"profiles      {c['profiles']} ({c['profiles_medical']} medical, {c['profiles_labor']} labor)",
        f"forget tasks  {c['forget_tasks']} x {c['profiles_per_task']} profiles; retain "
        f"{c['retain_train_profiles']} train + {c['retain_eval_profiles']} eval profiles; "
        f"{c.get('holdout_profiles', 0)} holdout profiles (never trained)",
        f"images        {c['images']} documents + {c['utility_images']} utility specimens "
        f"({manifest['image_size']} px)",
        f"QA rows       {c['rows_total']} = {c['qa_rows']} profile rows + {c['utility_rows']} utility rows",
        f"by split      {by_split}",
        f"paraphrases   {c.get('paraphrase_rows', 0)} rows (held-out phrasing, outside the core rows)",
        f"seed {manifest['seed']}, data_hash {manifest['data_hash']}",
    ]


def _cmd_generate(args: argparse.Namespace) -> int:
    from icu_tasks.data.generate import generate

    manifest = generate(
        args.out,
        seed=args.seed,
        profiles=args.profiles,
        tasks=args.tasks,
        profiles_per_task=args.profiles_per_task,
        workers=args.workers,
        image_size=args.image_size,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(f"wrote {os.path.abspath(args.out)} in {manifest['seconds']:.1f} s (synthetic, fictional data)")
    for line in _summary_lines(manifest):
        print("  " + line)
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from icu_tasks.data.dataset import validate

    summary = validate(args.data_dir, check_hash=args.hash)
    splits = ", ".join(f"{k} {v}" for k, v in summary["rows_by_split"].items())
    hashed = "content hash verified" if summary["hash_checked"] else "content hash not checked (use --hash)"
    print(f"ok: {summary['root']}")
    print(
        f"  {summary['profiles']} profiles, {summary['forget_tasks']} forget tasks, {summary['rows']} QA rows"
    )
    print(
        f"  by split: {splits}; images referenced: {summary['images_referenced']}, "
        f"all {summary['images_decoded']} decode"
    )
    print(f"  paraphrase rows: {summary['paraphrase_rows']} (held-out phrasing, not among the QA rows)")
    print(f"  data_hash {summary['data_hash']} ({hashed})")
    return 0


def _cmd_export_hf(args: argparse.Namespace) -> int:
    from icu_tasks.data.export_hf import export_hf

    counts = export_hf(args.data, args.out, overwrite=args.overwrite)
    rows = ", ".join(f"{k} {v}" for k, v in counts.items())
    print(f"wrote {os.path.abspath(args.out)}: {rows} (load it with datasets.load_dataset({args.out!r}))")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command group."""
    from icu_tasks.data.defaults import IMAGE_SIZE as DEFAULT_IMAGE_SIZE

    data = subparsers.add_parser(
        "data",
        help="generate or validate the ICU-Bench data set",
        description="Generate the ICU-Bench data set (fictional profiles, document images, QA parquet) or check "
        "a data dir.",
    )
    sub = data.add_subparsers(dest="data_command", metavar="{generate,validate,export-hf}", required=True)

    gen = sub.add_parser(
        "generate",
        help="generate a data set (defaults = the full benchmark)",
        description="Generate fictional profiles, document images and QA parquet into a new data dir.",
    )
    gen.add_argument("--out", required=True, help="output data dir (must not exist or be empty)")
    gen.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    gen.add_argument(
        "--profiles", type=int, default=1000, help="profiles, even, half medical half labor (1000)"
    )
    gen.add_argument("--tasks", type=int, default=100, help="number of forget tasks (100)")
    gen.add_argument("--profiles-per-task", type=int, default=5, help="profiles per forget task (5)")
    gen.add_argument("--workers", type=int, default=1, help="rendering processes (1)")
    gen.add_argument(
        "--image-size",
        type=int,
        default=DEFAULT_IMAGE_SIZE,
        help=f"document side in px ({DEFAULT_IMAGE_SIZE})",
    )
    gen.add_argument("--overwrite", action="store_true", help="replace an existing data dir at --out")
    gen.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    gen.set_defaults(func=_cmd_generate)

    val = sub.add_parser("validate", help="check a data dir", description="Check an ICU-Bench data dir.")
    val.add_argument("data_dir", help="the data dir to check")
    val.add_argument(
        "--hash", action="store_true", help="also recompute the content hash (reads every image)"
    )
    val.set_defaults(func=_cmd_validate)

    exp = sub.add_parser(
        "export-hf",
        help="write the data set as a Hugging Face dataset (images inside), ready for push_to_hub",
        description="Write the core QA rows of a data dir to OUT as a Hugging Face dataset: one parquet file "
        "per split with the images in an Image() column, and a README.md card naming the splits; "
        "datasets.load_dataset(OUT) returns a DatasetDict of the benchmark's splits.",
    )
    exp.add_argument("out", help="output dir (must not exist or be empty)")
    exp.add_argument(
        "--data", default=None, help="the data dir to export (default: $ICU_DATA_DIR or ./data/icu)"
    )
    exp.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    exp.set_defaults(func=_cmd_export_hf)
