"""``icu-bench run`` (the continual benchmark in one process) and ``icu-bench demo`` (everything from nothing)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from icu_unlearn.cli.args import (
    add_allow_data_mismatch,
    add_device,
    add_dtype,
    add_model,
    add_set,
    add_until_forgotten,
    model_dir,
    parse_sets,
)

#: The demo's scale: big enough for the tiny model to show forgetting, small enough for 2 CPU cores.
DEMO_SCALE = {"profiles": 40, "tasks": 4, "profiles_per_task": 3, "image_size": 160}
#: The demo's fine-tune (``FinetuneConfig`` fields over the library defaults): the vision tower and projector
#: at half the default learning rate, trained until every split x view group reaches 0.875 teacher-forced exact
#: match (the stopping rule, checked every 25 steps), with the default's 800 steps as the cap (docs/methods.md;
#: benchmarks/bench_finetune_recipe.py measures it against the library default).
DEMO_FINETUNE = {
    "vision_learning_rate": 2.5e-4,
    "stop_at_accuracy": 0.875,
    "check_every": 25,
    "max_steps": 800,
}
#: The demo's tiny model (``TinyConfig`` fields over its defaults): two decoder layers instead of four. It
#: memorises the profiles in fewer steps, each about half the compute (docs/methods.md, "The vanilla model");
#: ``icu-bench compare`` and the published comparison use the default four-layer model.
DEMO_TINY = {"text_layers": 2}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``run`` and ``demo``."""
    p = subparsers.add_parser(
        "run",
        help="run the continual benchmark in one process (resumable)",
        description="Score stage 0, then for k = 1..T unlearn forget task k from stage k-1 and score it "
        "with lmms-eval; write the report. Started again, it resumes from the last complete step.",
    )
    p.add_argument("--out", required=True, help="run dir (created; resumed if it exists)")
    p.add_argument("--config", help="YAML file with RunConfig fields (flags below override it)")
    add_model(p, "vanilla model dir (stage 0)")
    p.add_argument("--data", help="ICU-Bench data dir")
    p.add_argument("--method", help="unlearning method (default npo_diff)")
    p.add_argument("--stages", type=int, help="number of sequential forget tasks T (default 3)")
    _add_scoring_flags(p)
    p.add_argument("--eval-every", type=int, dest="eval_every", help=_help("eval_every") + " (default 1)")
    p.add_argument("--eval-window", type=int, dest="eval_window", help=_help("eval_window"))
    add_until_forgotten(p, None)
    p.add_argument(
        "--dry-run",
        action="store_true",
        dest="dry_run",
        help="check the inputs, print requests per stage and in total and an estimated wall time; write nothing",
    )
    p.add_argument(
        "--measure-batches",
        type=int,
        default=None,
        dest="measure_batches",
        help="batches per task (and training steps) timed for the wall-time estimate (default: 2 with "
        "--dry-run; 0 for a real run, which prints request counts and records every stage's measured time)",
    )
    add_set(p, "a method hyper-parameter, e.g. --set learning_rate=1e-3 (repeatable)")
    _add_probe_flags(p)
    p.add_argument("--overwrite", action="store_true", help="discard a run dir made with another config")
    add_allow_data_mismatch(p, "--model")
    p.set_defaults(func=_run)

    d = subparsers.add_parser(
        "demo",
        help="the end-to-end demo: data -> tiny model -> fine-tune -> unlearning stages -> lmms-eval -> report",
        description="Generate a small data set, build the tiny LLaVA model, fine-tune it into the vanilla model, "
        "run the unlearning stages scored by lmms-eval and write the report, all under --out; OUT/demo.json "
        "records the wall time of each phase. Run again, it reuses what is already there.",
    )
    d.add_argument("--out", default="runs/demo", help="demo dir (default runs/demo); reused on a second call")
    d.add_argument("--method", default="npo_diff", help="unlearning method (default npo_diff)")
    d.add_argument("--stages", type=int, default=3, help="number of forget stages (default 3)")
    _add_demo_scale(d)
    d.set_defaults(func=_demo)


def _add_scoring_flags(p: argparse.ArgumentParser) -> None:
    """What ``run`` scores and on what: tasks, utility tasks, evaluation batch, limit, device and dtype."""
    p.add_argument("--tasks", help="comma-separated lmms-eval tasks/groups to score (default icu)")
    p.add_argument(
        "--eval-batch-size", type=int, dest="batch_size", help="evaluation batch size (default 16)"
    )
    p.add_argument("--batch-size", type=int, dest="batch_size", help=argparse.SUPPRESS)
    p.add_argument("--limit", type=int, help="score at most N docs per task (debugging)")
    add_device(p)
    add_dtype(p, None)
    p.add_argument(
        "--utility-tasks",
        help="comma-separated extra lmms-eval tasks (TASK or TASK:METRIC) scored after every stage; each "
        "one's metric over its stage-0 value joins RU's utility term",
    )


def _add_demo_scale(d: argparse.ArgumentParser) -> None:
    """Hidden flags that shrink the demo (the tests run it at a tenth of its cost): data scale, a fixed
    fine-tune budget instead of the stopping rule, method hyper-parameters and docs scored per task."""
    hidden = argparse.SUPPRESS
    for key in ("profiles", "tasks", "profiles_per_task"):
        d.add_argument(f"--{key.replace('_', '-')}", type=int, default=DEMO_SCALE[key], help=hidden)
    d.add_argument("--finetune-steps", type=int, dest="finetune_steps", help=hidden)
    d.add_argument("--limit", type=int, help=hidden)
    add_set(d, hidden)


def _add_probe_flags(p: argparse.ArgumentParser) -> None:
    """``--probe-stages`` and ``--probe-steps`` of ``run``."""
    p.add_argument(
        "--probe-stages",
        dest="probe_stages",
        default="",
        help="comma-separated stages to probe after the run (relearning attack, its controls, int8 and "
        "4-bit quantization; icu-bench attack probe), e.g. 1,4,8",
    )
    p.add_argument(
        "--probe-steps",
        type=int,
        default=None,
        dest="probe_steps",
        help="steps of each relearning attack (default 25)",
    )


def _help(name: str) -> str:
    """A RunConfig field's help text (its dataclass metadata), without importing torch."""
    from icu_unlearn.pipeline.run import RunConfig

    return RunConfig.__dataclass_fields__[name].metadata["help"]


def _run(args: argparse.Namespace) -> int:
    from icu_tasks.errors import ConfigError
    from icu_unlearn.pipeline.run import DEFAULT_MEASURE_BATCHES, RunConfig, dry_run, run

    if args.measure_batches is None:
        args.measure_batches = DEFAULT_MEASURE_BATCHES if args.dry_run else 0
    if args.measure_batches < 0:
        raise ConfigError(f"--measure-batches must be >= 0, got {args.measure_batches}")
    flags = {
        "base": model_dir(args, required=False),
        "data": args.data,
        "method": args.method,
        "stages": args.stages,
        "tasks": args.tasks.split(",") if args.tasks else None,
        "batch_size": args.batch_size,
        "limit": args.limit,
        "device": args.device,
        "dtype": args.dtype,
        "utility_tasks": args.utility_tasks.split(",") if args.utility_tasks else None,
        "eval_every": args.eval_every,
        "eval_window": args.eval_window,
        "until_forgotten": args.until_forgotten,
        "check_every": args.check_every,
    }
    method_args = parse_sets(args.set)
    if args.config:
        config = RunConfig.from_file(args.config, **flags)
        config.method_args.update(method_args)
    else:
        if not (args.model and args.data):
            raise ConfigError("icu-bench run needs --config, or --model and --data")
        given = {k: v for k, v in flags.items() if v is not None}
        config = RunConfig.from_dict(given | {"method_args": method_args}, source="command line")
    start = time.perf_counter()
    kwargs = {
        "overwrite": args.overwrite,
        "allow_data_mismatch": args.allow_data_mismatch,
        "measure_batches": args.measure_batches,
    }
    if args.dry_run:
        dry_run(config, args.out, **kwargs)
        return 0
    probe_stages, probe_config = _probes(args)
    run(config, args.out, **kwargs, probe_stages=probe_stages, probe_config=probe_config)
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0


def _probes(args: argparse.Namespace) -> tuple[list[int], object]:
    """``--probe-stages`` as ints and the probes' config (``--probe-steps``, ``--device``)."""
    from icu_tasks.errors import ConfigError
    from icu_unlearn.pipeline.probes import ProbeConfig
    from icu_unlearn.pipeline.relearn import RelearnConfig

    try:
        stages = [int(k) for k in args.probe_stages.split(",") if k.strip()]
    except ValueError:
        raise ConfigError(
            f"--probe-stages: expected stage numbers like 1,4,8, got {args.probe_stages!r}"
        ) from None
    attack = RelearnConfig() if args.probe_steps is None else RelearnConfig(steps=args.probe_steps)
    return stages, ProbeConfig(attack, device=args.device or "cpu")


class PhaseClock:
    """The demo's progress lines (``[n/N elapsed s] text``) and the wall time of each phase."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.phases: dict[str, float] = {}
        self.start = self._began = time.perf_counter()
        self._current: str | None = None

    def step(self, n: int, text: str) -> None:
        """Phase ``n`` (1-based) begins: the one before it ends and its duration is recorded."""
        now = time.perf_counter()
        self._close(now)
        self._current, self._began = self.names[n - 1], now
        print(f"[{n}/{len(self.names)} {now - self.start:5.0f} s] {text}", flush=True)

    def finish(self) -> dict[str, float]:
        """End the last phase; returns phase name → seconds (rounded to 0.1 s), in order."""
        self._close(time.perf_counter())
        self._current = None
        return dict(self.phases)

    def _close(self, now: float) -> None:
        if self._current is not None:
            self.phases[self._current] = round(now - self._began, 1)


def _demo(args: argparse.Namespace) -> int:
    from icu_tasks.data.generate import generate
    from icu_tasks.errors import ConfigError
    from icu_tasks.records.files import write_record
    from icu_tasks.records.layout import DEMO_JSON, check_parents
    from icu_unlearn.methods import get_method
    from icu_unlearn.models.tiny import TinyConfig, build_tiny_model, corpus_from_data
    from icu_unlearn.pipeline.run import DEFAULT_TASKS, RunConfig, run
    from icu_unlearn.training.finetune import finetune

    if args.stages < 1 or args.stages > DEMO_SCALE["tasks"]:
        raise ConfigError(f"--stages must be between 1 and {DEMO_SCALE['tasks']}, got {args.stages}")
    args.method = get_method(args.method).name  # unknown name -> ConfigError with the closest name
    out = Path(args.out)
    check_parents(out / "data")
    data, tiny, vanilla, run_dir = out / "data", out / "tiny", out / "vanilla", out / f"run_{args.method}"
    clock = PhaseClock(("data", "tiny_model", "finetune", "unlearn_and_score", "report"))
    step = clock.step

    scale = DEMO_SCALE | {k: getattr(args, k) for k in ("profiles", "tasks", "profiles_per_task")}
    step(1, f"data: {scale['profiles']} fictional profiles -> {data}")
    if not (data / "manifest.json").is_file():
        generate(data, seed=0, workers=2, **scale)
    step(2, f"tiny LLaVA model -> {tiny}")
    if not (tiny / "config.json").is_file():
        build_tiny_model(tiny, corpus_from_data(data), seed=0, config=TinyConfig(**DEMO_TINY))
    step(3, f"fine-tune (the vanilla model that knows the profiles) -> {vanilla}")
    fresh = not (vanilla / "config.json").is_file()
    if fresh:
        finetune(tiny, data, vanilla, _demo_finetune(args.finetune_steps))
    step(4, f"{args.stages} unlearning stages with {args.method}, scored by lmms-eval -> {run_dir}")
    # the vanilla model learnt the long-form summaries (FinetuneConfig.longform): score their fluency and leakage;
    # icu_ll: answer probability, truth ratio and membership inference (forget vs holdout) per stage
    tasks = [*DEFAULT_TASKS, "icu_longform", "icu_ll"]
    config = RunConfig(
        base=str(vanilla), data=str(data), method=args.method, stages=args.stages, tasks=tasks,
        method_args=parse_sets(args.set), limit=args.limit,
    )  # fmt: skip
    run(config, run_dir, log=lambda m: print(f"    {m}", flush=True))
    step(5, "report")
    report_md = run_dir / "report" / "report.md"
    print(report_md.read_text(encoding="utf-8").split("\n## ")[0])
    print(f"report: {report_md} (heatmaps and curves: {report_md.parent}/*.png)")
    phases = clock.finish()
    seconds = time.perf_counter() - clock.start
    record = {"seconds": round(seconds, 1), "phases": phases, "method": args.method, "stages": args.stages}
    if fresh or not (out / DEMO_JSON).is_file():  # a re-run that reused the fine-tune keeps the first time
        write_record(out / DEMO_JSON, record)  # read by benchmarks/run_all.py
    print(f"demo finished in {seconds:.0f} s")
    return 0


def _demo_finetune(steps: int | None):
    """The demo's ``FinetuneConfig``; ``steps`` (the hidden ``--finetune-steps``) trains that many steps with the
    stopping rule off."""
    from icu_unlearn.training.finetune import FinetuneConfig

    fixed = {"max_steps": steps, "stop_at_accuracy": 0.0} if steps else {}
    return FinetuneConfig(**(DEMO_FINETUNE | fixed))
