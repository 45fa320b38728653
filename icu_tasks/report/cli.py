"""``icu-bench report RUN_DIR [RUN_DIR ...] [--out DIR] [--metric ...]``: continual metrics, tables, heatmaps;
``icu-bench report --leaderboard FILE RUN_DIR ...``: add runs to a leaderboard file."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from icu_tasks.errors import ConfigError
from icu_tasks.report.samples import DEFAULT_METRIC, METRICS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` command."""
    p = subparsers.add_parser(
        "report",
        help="continual matrices, ICU metrics, report.md/json and heatmaps of one or more run dirs",
        description="Read lmms-eval's results/samples files under RUN_DIR/eval/stage_K/ of every run, build the "
        "continual matrices and metrics, and write report.md, report.json and PNG figures. Several runs are "
        "compared side by side (one row per run).",
    )
    p.add_argument(
        "run_dirs",
        nargs="+",
        type=Path,
        metavar="RUN_DIR",
        help="run dir(s) of icu-bench run / the shell loop",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output dir (default: RUN_DIR/report; required for several runs)",
    )
    p.add_argument(
        "--metric",
        choices=METRICS,
        default=DEFAULT_METRIC,
        help=f"per-sample accuracy used for A/R/U (default {DEFAULT_METRIC}; mc_accuracy reads the _mc tasks)",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="N",
        help="bootstrap resamples for the 95%% intervals (profiles resampled, one draw shared by every stage; "
        "0 = none)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default 0)")
    p.add_argument(
        "--allow-data-mismatch",
        action="store_true",
        help="report a run whose stages or evaluations were made with other data than the run itself",
    )
    p.add_argument(
        "--leaderboard",
        type=Path,
        default=None,
        metavar="FILE",
        help="add the runs to this leaderboard file (e.g. docs/results/leaderboard.json) and rewrite it and its "
        ".md; a run made under another protocol or on other data than the leaderboard's seeds is refused",
    )
    p.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    """Load and check every run first (a bad dir fails before anything is written), then write the report.

    Refused: a run with nothing scored with ``--metric`` (an all-n/a report), and a run whose stages or
    evaluations recorded another data hash than the run (:func:`icu_tasks.records.provenance.check_run_data`).
    """
    from icu_tasks.continual.registry import OVERVIEW
    from icu_tasks.errors import StageError
    from icu_tasks.records.layout import report_dir
    from icu_tasks.records.provenance import check_run_data
    from icu_tasks.report.results import load_run
    from icu_tasks.report.write import REPORT_MD, write_report

    if args.bootstrap < 0:
        raise ConfigError(f"--bootstrap must be >= 0 (0 = no intervals), got {args.bootstrap}")
    if args.leaderboard is not None:
        return _add_to_leaderboard(args)
    if len(args.run_dirs) > 1 and args.out is None:
        raise ConfigError("several run dirs: pass --out DIR for the combined report")
    out = args.out if args.out is not None else report_dir(args.run_dirs[0])
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    runs = [load_run(d, metric=args.metric, progress=True) for d in args.run_dirs]
    for d, run in zip(args.run_dirs, runs, strict=True):
        if not run.scored:
            raise StageError(
                f"nothing to report for {d}: no stage has samples scored with {args.metric} under "
                f"{d / 'eval'}/stage_K/ (score the stages first, or pick another --metric)"
            )
        check_run_data(d, allow=args.allow_data_mismatch)
    report = write_report(runs, out, n_boot=args.bootstrap, seed=args.seed)
    for s in report["runs"]:
        m = s["metrics"]
        shown = ", ".join(
            f"{key}={'n/a' if m[key] is None or (isinstance(m[key], float) and math.isnan(m[key])) else f'{m[key]:.3f}'}"
            for key in (metric.name for metric in OVERVIEW)
        )
        missing = f" (missing stages: {s['missing_stages']})" if s["missing_stages"] else ""
        print(f"{s['name']} [{s['method']}]: {shown}{missing}")
    print(f"report written to {out / REPORT_MD}")
    return 0


def _add_to_leaderboard(args: argparse.Namespace) -> int:
    """``--leaderboard FILE``: check every run against the file's protocol, then add them all (or none)."""
    from icu_tasks.report.comparison import cell
    from icu_tasks.report.headline import PRIMARY
    from icu_tasks.report.leaderboard import add_runs

    if args.out is not None:
        raise ConfigError("--leaderboard rewrites FILE and FILE's .md; --out does not apply")
    board = add_runs(args.leaderboard, args.run_dirs)
    for row in board["aggregate"]["ranking"][PRIMARY]:
        tied = f", tied with {', '.join(row['tied_with'])}" if row["tied_with"] else ""
        print(f"{row['rank']}. {row['method']}: {PRIMARY} {cell(row)} over {row['n']} seed(s){tied}")
    print(f"leaderboard written to {args.leaderboard} and {args.leaderboard.with_suffix('.md')}")
    return 0
