"""``icu-bench compare``: every method on several seeds, resumable, with means, paired differences and a ranking."""

from __future__ import annotations

import argparse
import time

from icu_tasks.errors import ConfigError
from icu_unlearn.cli.args import add_until_forgotten, parse_sets
from icu_unlearn.training.stop_config import DEFAULT_CHECK_EVERY

# The defaults are written here so that building the parser imports nothing heavy;
# icu_unlearn.pipeline.compare.CompareConfig checks every value (tests/test_compare.py checks that the defaults agree).


#: The plain options: (flag, type, default, help); the default is appended to the help when not None.
OPTIONS: tuple[tuple[str, type, object, str], ...] = (
    ("--seeds", str, "0,1,2", "comma-separated seeds"),
    ("--methods", str, None, "comma-separated methods (default: every registered method)"),
    ("--stages", int, 8, "forget stages per run"),
    ("--profiles", int, 40, "profiles per data set"),
    ("--profiles-per-task", int, 2, "profiles per forget task"),
    ("--image-size", int, 160, "document image side in px"),
    ("--tasks", str, "icu,icu_longform,icu_ll", "lmms-eval tasks scored after every stage"),
    ("--max-steps", int, 300, "step budget of every training stage under --until-forgotten"),
    ("--eval-every", int, 1, "score every N-th stage (and the last)"),
    ("--eval-window", int, None, "at stage k score only forget tasks j <= k + W"),
    ("--limit", int, None, "score at most N docs per task (toy runs only)"),
    ("--batch-size", int, 16, "evaluation batch size"),
    ("--device", str, "cpu", "cpu or cuda"),
)
DEFAULT_TARGET = 0.9


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``compare``."""
    p = subparsers.add_parser(
        "compare",
        help="run every method on several seeds and rank them (means, seed-level intervals, paired differences)",
        description="For each seed S: generate data (seed S: other people, other forget tasks), build and "
        "fine-tune a vanilla model (seed S), then run each method for STAGES stages (unlearning seed S). By "
        "default every training stage runs until the same normalised forgetting is reached. Writes "
        "OUT/comparison.md/json and OUT/leaderboard.json/md. Started again, it skips every finished step.",
    )
    p.add_argument("--out", required=True, help="comparison dir (created; resumed if it exists)")
    for flag, kind, default, text in OPTIONS:
        shown = "" if default is None or flag == "--methods" else f" (default {default})"
        p.add_argument(flag, type=kind, default=default, help=text + shown)
    add_until_forgotten(p, DEFAULT_CHECK_EVERY, DEFAULT_TARGET)
    p.add_argument(
        "--step-budgets",
        action="store_true",
        help="compare at the methods' calibrated step budgets instead of equal forgetting",
    )
    p.add_argument(
        "--finetune-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a vanilla fine-tune setting, e.g. --finetune-set max_steps=5000 (repeatable; the recipe: stop at "
        "0.9 teacher-forced accuracy, checked every 50 steps, at most 3000 steps)",
    )
    p.add_argument(
        "--aggregate-only",
        action="store_true",
        help="only (re)write the comparison from the runs that are finished; run nothing",
    )
    p.set_defaults(func=_compare)


def _ints(text: str, flag: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{flag}: expected comma-separated integers, got {text!r}") from None


def _compare(args: argparse.Namespace) -> int:
    from icu_unlearn.pipeline.compare import DEFAULT_FINETUNE, CompareConfig, aggregate_dir, compare

    if args.aggregate_only:
        aggregate_dir(args.out)
        return 0
    config = CompareConfig(
        seeds=_ints(args.seeds, "--seeds"),
        methods=[m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else [],
        stages=args.stages,
        profiles=args.profiles,
        profiles_per_task=args.profiles_per_task,
        image_size=args.image_size,
        tasks=[t.strip() for t in args.tasks.split(",") if t.strip()],
        until_forgotten=None if args.step_budgets else args.until_forgotten,
        check_every=args.check_every,
        max_steps=args.max_steps,
        eval_every=args.eval_every,
        eval_window=args.eval_window,
        limit=args.limit,
        batch_size=args.batch_size,
        device=args.device,
        finetune={**DEFAULT_FINETUNE, **parse_sets(args.finetune_set, "--finetune-set")},
    )
    start = time.perf_counter()
    compare(config, args.out)
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0
