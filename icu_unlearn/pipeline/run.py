"""``icu-bench run``: the whole continual benchmark in one process, resumable.

For a run dir ``RUN`` and forget tasks 1..T: score the vanilla model (stage 0), then for each k train stage k
from stage k−1 (``icu_unlearn.training.unlearn.run_stage``) and score it, then write the report. The scoring model is
loaded once and only the adapter is swapped per stage; lmms-eval is driven through its Python API
(:mod:`icu_unlearn.scoring.evaluate`), so the files are the ones the ``lmms-eval`` CLI writes, with the same scores.

Resume: every stage dir and eval dir is written under a temp name and renamed, so after a kill the run dir holds
only complete stages/evaluations plus temp leftovers, which are deleted on the next start. Started again with the
same config, the run skips what is complete and redoes only the interrupted step (seeded, so the result is the
same as an uninterrupted run). A different config is refused unless ``overwrite``; a second process on the same
run dir is refused by a lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from icu_tasks.errors import ConfigError, StageError
from icu_tasks.records.files import read_record, write_record
from icu_tasks.records.layout import COST_JSON
from icu_tasks.records.schedule import EvalSchedule
from icu_unlearn.methods.config import coerce_fields
from icu_unlearn.pipeline.rundir import RunDir
from icu_unlearn.training.stop_config import DEFAULT_CHECK_EVERY, ForgettingTarget

if TYPE_CHECKING:
    from icu_unlearn.pipeline.probes import ProbeConfig

#: The `icu` group includes the holdout tasks, so every run scores B[0] (the base rate) with stage 0.
DEFAULT_TASKS: tuple[str, ...] = ("icu",)


@dataclass
class RunConfig:
    """Everything that determines a run's results (recorded in ``RUN/run.json``).

    Attributes:
        base: the vanilla model dir (stage 0; ``pretrained=`` of every evaluation).
        data: the ICU-Bench data dir the vanilla model was fine-tuned on.
        method: unlearning method name (see ``icu-bench unlearn --help`` / ``methods.list_methods()``).
        stages: number of sequential forget tasks T (stage k forgets task k).
        method_args: the method's hyper-parameters (fields of its config dataclass).
        tasks: lmms-eval task or group names to score after every stage.
        batch_size: evaluation batch size.
        max_new_tokens: generation cap for evaluation (None: the task's own).
        limit: score at most this many docs per task (debugging only; None = all).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``; run.json records the device
            it resolved to.
        dtype: the precision the base is loaded, trained and scored in (``auto``, ``float32``, ``bfloat16``,
            ``float16``; :mod:`icu_unlearn.models.precision`).
        name: a label for reports (default: the run dir's name).
        eval_every: score stages 0, N, 2N, … and always the last (1 = every stage).
        eval_window: at stage k score only forget tasks j <= k + W (None = every task); see
            :mod:`icu_tasks.records.schedule`.
        until_forgotten: train each stage until its forget rows reach this normalised forgetting
            (:mod:`icu_unlearn.training.stop_rule`; the method's ``max_steps`` is the budget); None = the
            step budget alone.
        check_every: optimizer steps between two checks of ``until_forgotten``.
        utility_tasks: extra lmms-eval tasks (``TASK`` or ``TASK:METRIC``, any task lmms-eval knows) scored
            after every stage; each one's metric, over its stage-0 value, joins RU's utility term
            (:mod:`icu_tasks.report.external`).
    """

    base: str
    data: str
    method: str = "npo_diff"
    stages: int = 3
    method_args: dict[str, Any] = field(default_factory=dict)
    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))
    batch_size: int = 16
    max_new_tokens: int | None = None
    limit: int | None = None
    device: str | None = "auto"
    dtype: str = "auto"
    name: str | None = None
    eval_every: int = field(
        default=1,
        metadata={"help": "score stages 0, N, 2N, ... and always the last stage (1 = every stage)"},
    )
    eval_window: int | None = field(
        default=None,
        metadata={
            "help": "at stage k >= 1 score only forget tasks j <= k + W: the requested ones plus W future "
            "ones for collateral (stage 0 always scores every task; omitted = every task)"
        },
    )
    until_forgotten: float | None = field(
        default=None,
        metadata={
            "help": "train each stage until the normalised forgetting of its forget rows reaches F in (0, 1] "
            "(max_steps is the budget; omitted = the step budget alone)"
        },
    )
    check_every: int = field(
        default=DEFAULT_CHECK_EVERY,
        metadata={"help": "with until_forgotten: optimizer steps between two checks"},
    )
    utility_tasks: list[str] = field(
        default_factory=list,
        metadata={"help": "extra lmms-eval tasks (TASK or TASK:METRIC) whose metric joins RU's utility term"},
    )

    def __post_init__(self) -> None:
        from icu_tasks.report.external import check_utility_tasks
        from icu_unlearn.methods import canonical_name, get_method
        from icu_unlearn.models.loading import check_device_name
        from icu_unlearn.models.precision import check_training_dtype

        coerce_fields(self)  # YAML 1.1 reads 1e-3 as a string
        if self.stages < 1:
            raise ConfigError(f"stages must be >= 1, got {self.stages}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be >= 1 or omitted, got {self.limit}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1 or omitted, got {self.max_new_tokens}")
        if not self.tasks:
            raise ConfigError("tasks must name at least one lmms-eval task or group")
        EvalSchedule(self.eval_every, self.eval_window)  # bad values -> ConfigError
        if self.until_forgotten is not None:
            self.until_forgotten = float(self.forgetting_target.target)
        ForgettingTarget(1.0, self.check_every)  # a bad check_every -> ConfigError, with or without the rule
        self.device = check_device_name(self.device)
        self.dtype = check_training_dtype(self.dtype, self.device)
        get_method(self.method)  # unknown name -> ConfigError with the closest name
        self.method = canonical_name(self.method)
        self.base, self.data = str(Path(self.base).resolve()), str(Path(self.data).resolve())
        self.tasks = [str(t) for t in self.tasks]
        self.utility_tasks = check_utility_tasks(self.utility_tasks or [], self.tasks)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> RunConfig:
        """Read a YAML (or JSON) config; keys are this class's fields; ``overrides`` win when not None."""
        p = Path(path)
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"cannot read config {p}: {err}") from err
        if not isinstance(raw, dict):
            raise ConfigError(f"config {p} must be a mapping of RunConfig fields")
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(raw, source=str(p))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(
                f"unknown key(s) in {source}: {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        missing = [k for k in ("base", "data") if not raw.get(k)]
        if missing:
            raise ConfigError(f"{source} needs {' and '.join(missing)}")
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def forgetting_target(self) -> ForgettingTarget | None:
        """The stop rule of every stage (None: the step budget alone)."""
        if self.until_forgotten is None:
            return None
        return ForgettingTarget(self.until_forgotten, self.check_every)

    @property
    def schedule(self) -> EvalSchedule:
        """Which stages are scored and which forget tasks at each (:class:`icu_tasks.records.schedule.EvalSchedule`)."""
        return EvalSchedule(self.eval_every, self.eval_window)


def model_args_for(config: RunConfig, stage_dir: Path | None) -> str:
    """The ``--model_args`` string the shell loop passes for this stage (names lmms-eval's output folder)."""
    args = f"pretrained={config.base}"
    if stage_dir is not None:
        args += f",adapter={stage_dir}"
    return args + f",batch_size={config.batch_size}"


#: Batches per task (and training steps) timed for the cost estimate at the start of a run / a dry run.
DEFAULT_MEASURE_BATCHES = 2


def run(
    config: RunConfig,
    run_dir: str | Path,
    *,
    overwrite: bool = False,
    allow_data_mismatch: bool = False,
    measure_batches: int = 0,
    log: Callable[[str], None] = print,
    probe_stages: Sequence[int] = (),
    probe_config: ProbeConfig | None = None,
) -> dict[str, Any]:
    """Run (or resume) the continual benchmark; returns the report dict (``report/report.json``).

    ``probe_stages``: after the last stage, run the robustness probes of these stages
    (:func:`icu_unlearn.pipeline.probes.probe_stage` with ``probe_config``), so the report has their table.

    Every input is checked first (:func:`icu_unlearn.scoring.preflight.check_run_inputs`: model dir, data, method,
    tasks, the data hash the vanilla model was fine-tuned on, the run dir's recorded config); a run dir this
    call created is removed again if it fails before any stage or evaluation is complete.
    ``allow_data_mismatch`` accepts data other than the vanilla model's. The run's cost (requests per stage,
    and, with ``measure_batches`` > 0, an estimated wall time from that many timed batches; default 0 =
    counts only, as measuring costs a model pass per task) is logged first and
    recorded in ``RUN/cost.json`` with the measured seconds of every stage (:mod:`icu_unlearn.pipeline.cost`).
    """
    from icu_unlearn.scoring.preflight import check_run_inputs

    rd = RunDir(run_dir)
    # Every input is validated before the lock is taken: bad input writes nothing (no run dir, no lock).
    _, record = check_run_inputs(config, rd, overwrite=overwrite, allow_data_mismatch=allow_data_mismatch)
    # the probes train models (torch): imported here so that building the CLI parser never imports them
    from icu_unlearn.pipeline.probes import ProbeConfig, check_probe_stages

    probes = (
        check_probe_stages(probe_stages, config.stages),
        probe_config or ProbeConfig(device=config.device),
    )
    fresh = not rd.root.exists()
    with rd.lock():
        try:
            report = _run_locked(
                config, rd, record, overwrite, allow_data_mismatch, measure_batches, log, probes
            )
        except BaseException:
            if fresh and not any(
                rd.stage_complete(k) or rd.eval_complete(k) for k in range(config.stages + 1)
            ):
                shutil.rmtree(rd.root, ignore_errors=True)  # nothing complete: leave no half-made run dir
            raise
    log(f"report: {rd.report_dir / 'report.md'}")
    return report


def dry_run(
    config: RunConfig,
    run_dir: str | Path,
    *,
    overwrite: bool = False,
    allow_data_mismatch: bool = False,
    measure_batches: int = DEFAULT_MEASURE_BATCHES,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """What :func:`run` would check, score and cost, without writing anything; returns the cost record.

    The inputs are checked as by :func:`run` (an existing run dir against its ``run.json``, read only), the
    requests are counted, and with ``measure_batches`` > 0 the base model is loaded and a few batches of
    scoring and a short training (in a scratch dir that is removed) are timed.
    """
    from icu_unlearn.pipeline.cost import estimate, format_estimate, measure, plan_requests
    from icu_unlearn.scoring.preflight import check_run_inputs

    check_run_inputs(config, RunDir(run_dir), overwrite=overwrite, allow_data_mismatch=allow_data_mismatch)
    plan = plan_requests(config)
    costs = None
    if measure_batches > 0:
        costs = measure(config, plan, measure_batches, allow_data_mismatch=allow_data_mismatch)
    record = estimate(plan, costs)
    log(f"dry run of {config.method} on {config.data} (nothing written to {run_dir}):")
    for line in format_estimate(record):
        log(line)
    return record


class _CostLog:
    """``RUN/cost.json``: the estimate made at the start plus the measured seconds of every stage."""

    def __init__(self, rd: RunDir, record: dict[str, Any]) -> None:

        self.path = rd.root / COST_JSON
        old = {}
        with contextlib.suppress(StageError):  # an unreadable log starts afresh
            old = read_record(self.path)
        self.record = record | {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self.record["actual"] = old.get("actual", {})

    def add(self, k: int, key: str, seconds: float) -> None:
        self.record["actual"].setdefault(str(k), {})[key] = round(seconds, 3)
        write_record(self.path, self.record)


def _start(config: RunConfig, rd: RunDir, measure_batches: int, allow: bool, log: Callable[[str], None]):
    """Load the scoring model, estimate the run's cost (logged, ``cost.json``); returns (lm, cost log)."""
    from icu_unlearn.pipeline.cost import estimate, format_estimate, measure, plan_requests
    from icu_unlearn.scoring.evaluate import load_scorer

    lm, load_seconds = load_scorer(config)
    plan = plan_requests(config)
    costs = None
    if measure_batches > 0:
        costs = measure(config, plan, measure_batches, lm=lm, allow_data_mismatch=allow)
        costs.load_seconds = load_seconds
    record = estimate(plan, costs)
    for line in format_estimate(record):
        log(line)
    cost_log = _CostLog(rd, record)
    write_record(cost_log.path, cost_log.record)
    return lm, cost_log


def _train(
    config: RunConfig, rd: RunDir, k: int, allow: bool, cost_log: _CostLog, log: Callable[[str], None]
) -> None:
    """Train stage ``k`` into the run dir and record its seconds."""
    from icu_unlearn.methods import build_method
    from icu_unlearn.training.unlearn import run_stage

    t0 = time.perf_counter()
    method = build_method(config.method, **config.method_args)
    result = run_stage(
        method, config.base, config.data, k, rd.root, device=config.device, allow_data_mismatch=allow,
        until_forgotten=config.forgetting_target, dtype=config.dtype,
    )  # fmt: skip
    cost_log.add(k, "train_s", time.perf_counter() - t0)
    rule = result.record.get("stop_rule")
    reached = ""
    if rule:
        value = "n/a" if rule["value"] is None else f"{rule['value']:.2f}"
        reached = f", forgetting {value} ({'met' if rule['met'] else 'NOT met'}, {rule['steps']} steps)"
    log(f"stage {k}/{config.stages}: {config.method} trained in {time.perf_counter() - t0:.1f} s{reached}")


def _run_locked(
    config: RunConfig,
    rd: RunDir,
    record: dict[str, Any],
    overwrite: bool,
    allow_data_mismatch: bool,
    measure_batches: int,
    log: Callable[[str], None],
    probes: tuple[list[int], ProbeConfig] = ([], None),
) -> dict[str, Any]:
    """The body of :func:`run` once its inputs are validated and the run dir is locked."""
    from icu_tasks.report.results import load_run
    from icu_tasks.report.write import write_report
    from icu_unlearn.scoring.evaluate import score

    removed = rd.clean_partial()
    if removed:
        log(f"discarded {len(removed)} half-written dir(s) from an interrupted run")
    rd.check_config(record, overwrite=overwrite)
    lm, cost_log = _start(config, rd, measure_batches, allow_data_mismatch, log)
    schedule, n_tasks = config.schedule, cost_log.record["forget_tasks_in_data"]
    for k in range(config.stages + 1):
        stage = rd.stage_dir(k) if k else None
        if k and not rd.stage_complete(k):
            _train(config, rd, k, allow_data_mismatch, cost_log, log)
        elif k:
            log(f"stage {k}/{config.stages}: complete, skipped")
        if not schedule.scored(k, config.stages):
            log(f"stage {k}/{config.stages}: not scored (eval_every={config.eval_every})")
            continue
        if rd.eval_complete(k):
            log(f"stage {k}/{config.stages}: scores complete, skipped")
            continue
        t0 = time.perf_counter()
        lm.load_adapter(str(stage) if stage else None)
        score(
            lm,
            model_args_for(config, stage),
            config.tasks,
            rd.eval_dir(k),
            data_dir=Path(config.data),
            limit=config.limit,
            forget_tasks=schedule.forget_tasks(k, n_tasks),
            utility_tasks=config.utility_tasks,
        )
        cost_log.add(k, "score_s", time.perf_counter() - t0)
        log(
            f"stage {k}/{config.stages}: scored {', '.join(config.tasks + config.utility_tasks)} in "
            f"{time.perf_counter() - t0:.1f} s"
        )
    from icu_unlearn.pipeline.probes import probe_stage  # torch: see run()

    for k in probes[0]:
        probe_stage(rd.root, k, probes[1], log=log, lock=False)
    return write_report([load_run(rd.root)], rd.report_dir)
