"""``icu-bench compare``: every method on several seeds, resumable, with means, paired differences and a ranking."""

from __future__ import annotations

import argparse
import time

from icu_tasks.errors import ConfigError
from icu_unlearn.cli.args import add_until_forgotten, parse_sets
from icu_unlearn.training.stop_config import DEFAULT_CHECK_EVERY

#: The defaults of the comparison, written here so that building the parser imports nothing heavy
#: (``icu_unlearn.pipeline.compare.CompareConfig`` has the same ones and checks every value).
DEFAULTS = {"seeds": "0,1,2", "stages": 8, "profiles": 40, "per_task": 2, "image_size": 160,
            "tasks": "icu,icu_longform,icu_ll", "target": 0.9, "budget": 300}  # fmt: skip


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
    p.add_argument(
        "--seeds", default=DEFAULTS["seeds"], help=f"comma-separated seeds (default {DEFAULTS['seeds']})"
    )
    p.add_argument(
        "--methods", default=None, help="comma-separated methods (default: every registered method)"
    )
    p.add_argument(
        "--stages",
        type=int,
        default=DEFAULTS["stages"],
        help=f"forget stages per run (default {DEFAULTS['stages']})",
    )
    p.add_argument(
        "--profiles",
        type=int,
        default=DEFAULTS["profiles"],
        help=f"profiles per data set (default {DEFAULTS['profiles']})",
    )
    p.add_argument(
        "--profiles-per-task",
        type=int,
        default=DEFAULTS["per_task"],
        dest="profiles_per_task",
        help=f"profiles per forget task (default {DEFAULTS['per_task']})",
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=DEFAULTS["image_size"],
        dest="image_size",
        help=f"document image side in px (default {DEFAULTS['image_size']})",
    )
    p.add_argument(
        "--tasks",
        default=DEFAULTS["tasks"],
        help=f"lmms-eval tasks scored after every stage (default {DEFAULTS['tasks']})",
    )
    add_until_forgotten(p, DEFAULT_CHECK_EVERY, DEFAULTS["target"])
    p.add_argument(
        "--step-budgets",
        action="store_true",
        dest="step_budgets",
        help="compare at the methods' calibrated step budgets instead of equal forgetting",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=DEFAULTS["budget"],
        dest="max_steps",
        help=f"step budget of every training stage under --until-forgotten (default {DEFAULTS['budget']})",
    )
    p.add_argument(
        "--eval-every", type=int, default=1, dest="eval_every", help="score every N-th stage (default 1)"
    )
    p.add_argument(
        "--eval-window", type=int, default=None, dest="eval_window", help="score only tasks j <= k + W"
    )
    p.add_argument("--limit", type=int, default=None, help="score at most N docs per task (toy runs only)")
    p.add_argument(
        "--batch-size", type=int, default=16, dest="batch_size", help="evaluation batch size (default 16)"
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument(
        "--finetune-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a vanilla fine-tune setting, e.g. --finetune-set max_steps=5000 (repeatable; the recipe: stop at 0.9 "
        "teacher-forced accuracy, checked every 50 steps, at most 3000 steps)",
    )
    p.add_argument(
        "--aggregate-only",
        action="store_true",
        dest="aggregate_only",
        help="only (re)write the comparison from the runs that are finished; run nothing",
    )
    p.set_defaults(func=_compare)  # fmt: skip


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
