"""``icu-bench sweep``: a hyper-parameter grid on stage 1, scored and selected (:mod:`icu_unlearn.pipeline.sweep`)."""

from __future__ import annotations

import argparse

from icu_unlearn.cli.args import add_device, add_model, add_set, key_values, model_dir, parse_sets


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``sweep`` to the ``icu-bench`` parser."""
    p = subparsers.add_parser(
        "sweep",
        help="a hyper-parameter grid on stage 1 (forget task 1), with a table and the selection rule's pick",
        description="Run stage 1 of METHOD for every point of the grid (the vanilla model loaded once), "
        "score each by teacher-forced accuracy on forget task 1 (per view), retain-eval and holdout, and write "
        "OUT/sweep.md, sweep.csv and results.json with the pick of the rule: the smallest budget (max_steps, "
        "then learning_rate) with normalised forgetting >= 0.9 on both views and retain-eval >= 0.9 x vanilla; "
        "else the best trade-off, said so. Rerunning the same command resumes.",
    )
    p.add_argument("--method", required=True, help="the method to tune (see `icu-bench methods`)")
    add_model(p, "the vanilla model dir; required")
    p.add_argument("--data", required=True, help="ICU-Bench data dir (use one not used for the final runs)")
    p.add_argument(
        "--out", required=True, help="sweep dir (created; an existing one with the same spec resumes)"
    )
    p.add_argument(
        "--grid",
        nargs="+",
        required=True,
        metavar="KEY=V1,V2",
        help="hyper-parameters to vary, e.g. --grid learning_rate=3e-4,1e-3 max_steps=25,50",
    )
    add_set(p, "a fixed hyper-parameter", dest="fixed")
    add_device(p)
    p.set_defaults(func=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    from icu_unlearn.pipeline.sweep import sweep

    grid = dict(key_values(g) for g in args.grid)
    fixed = parse_sets(args.fixed)
    summary = sweep(args.method, model_dir(args), args.data, args.out, grid, fixed, device=args.device)
    pick = summary["pick"]
    verdict = "meets the rule" if summary["rule_met"] else "best trade-off (no point meets the rule)"
    if pick is not None:
        point = {k: summary["rows"][pick][k] for k in summary["spec"]["grid"]}
        print(f"pick: {point} ({verdict}); table: {args.out}/sweep.md")
    return 0
