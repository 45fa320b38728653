"""``icu-bench attack``: robustness probes of a run's stage (is it really forgotten?).

* ``attack relearn RUN --stage K`` — the relearning attack (and ``--kind benign`` / ``scratch`` controls):
  writes ``RUN/probes/stage_K/<kind>``, a stage dir that ``icu_hf`` scores like any stage;
* ``attack probe RUN --stage K`` — every probe of stage K (relearn, benign, the scratch control, int8 and
  4-bit quantization) trained and scored, resumable;
* ``attack table RUN`` — the robustness table of what was probed (JSON on stdout).
"""

from __future__ import annotations

import argparse
import json
import sys

from icu_unlearn.cli.args import add_device

#: Defaults shown in ``--help`` (the values of :class:`icu_unlearn.pipeline.relearn.RelearnConfig`).
STEPS, BATCH = 25, 8


def _attack_flags(p: argparse.ArgumentParser, stage_required: bool = True) -> None:
    p.add_argument("run", help="run dir made by icu-bench run")
    p.add_argument(
        "--stage",
        type=int,
        required=stage_required,
        help="the stage K to attack (forget tasks 1..K)"
        + ("" if stage_required else "; not with --kind scratch"),
    )
    p.add_argument(
        "--steps", type=int, default=STEPS, help=f"fine-tuning steps of the attack (default {STEPS})"
    )
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the attacked stage's own)")
    p.add_argument(
        "--batch-size", type=int, default=BATCH, dest="batch_size", help=f"rows per step (default {BATCH})"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the exposed/unexposed split and the data order"
    )
    add_device(p)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``attack relearn``, ``attack probe`` and ``attack table``."""
    top = subparsers.add_parser("attack", help="robustness probes: relearning attacks and quantization")
    sub = top.add_subparsers(dest="attack", metavar="PROBE", required=True)
    r = sub.add_parser(
        "relearn",
        help="fine-tune stage K on half of the forgotten people; write a scorable stage dir",
        description="Fine-tune stage K's adapter for N steps on the exposed half of the profiles of forget "
        "tasks 1..K (benign: on retain-train rows; scratch: the vanilla model on half of the holdout people) "
        "and write RUN/probes/stage_K/<kind>.",
    )
    _attack_flags(r, stage_required=False)
    r.add_argument(
        "--kind", default="relearn", choices=("relearn", "benign", "scratch"), help="default relearn"
    )
    r.add_argument("--overwrite", action="store_true", help="replace an existing attack dir")
    r.set_defaults(func=_relearn)
    p = sub.add_parser(
        "probe",
        help="train and score every probe of stage K (relearn, benign, scratch control, int8, 4-bit)",
    )
    _attack_flags(p)
    p.add_argument(
        "--quantize", default="int8,nf4", help="comma-separated schemes: int8, int4, nf4 (default int8,nf4)"
    )
    p.add_argument(
        "--eval-batch-size", type=int, default=16, dest="eval_batch_size", help="scoring batch size"
    )
    p.set_defaults(func=_probe)
    t = sub.add_parser("table", help="the robustness table of a run's probes (JSON)")
    t.add_argument("run", help="run dir")
    t.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of the intervals")
    t.set_defaults(func=_table)


def _config(args: argparse.Namespace):
    from icu_unlearn.pipeline.relearn import RelearnConfig

    return RelearnConfig(steps=args.steps, learning_rate=args.lr, batch_size=args.batch_size, seed=args.seed)


def _relearn(args: argparse.Namespace) -> int:
    # torch and transformers load only when a command runs (the parser stays light)
    from icu_tasks.errors import ConfigError
    from icu_tasks.records.layout import probe_dir
    from icu_unlearn.pipeline.probes import check_probe_stage, run_inputs
    from icu_unlearn.pipeline.relearn import relearn_attack

    if args.kind == "scratch" and args.stage is not None:
        raise ConfigError("--kind scratch starts from the vanilla model (stage 0): leave out --stage")
    if args.kind != "scratch" and args.stage is None:
        raise ConfigError(f"--kind {args.kind} attacks a stage: --stage K is required")
    config = _config(args)
    base, data, _ = run_inputs(args.run)
    stage = None if args.kind == "scratch" else check_probe_stage(args.run, args.stage)
    k = 0 if args.kind == "scratch" else args.stage
    out = probe_dir(args.run, k, args.kind)
    relearn_attack(
        base,
        data,
        out,
        args.kind,
        config,
        stage_dir=stage,
        stage=k,
        overwrite=args.overwrite,
        device=args.device,
    )
    print(out)
    return 0


def _probe(args: argparse.Namespace) -> int:
    from icu_unlearn.pipeline.probes import ProbeConfig, probe_stage

    schemes = [s.strip() for s in args.quantize.split(",") if s.strip()]
    config = ProbeConfig(
        _config(args), schemes=schemes, batch_size=args.eval_batch_size, device=args.device or "cpu"
    )
    probe_stage(args.run, args.stage, config)
    return 0


def _table(args: argparse.Namespace) -> int:
    from icu_tasks.errors import StageError
    from icu_tasks.report.robustness import robustness_table

    table = robustness_table(args.run, n_boot=args.resamples)
    if table is None:
        raise StageError(f"{args.run} has no scored probes (run icu-bench attack probe first)")
    json.dump(table, sys.stdout, indent=2)
    print()
    return 0
