"""``icu-bench compare``: N seeds × M methods of the continual benchmark, resumable, aggregated over seeds.

Each seed S is a whole repetition: data generated with seed S (other people, so other forget tasks in another
order), a tiny model and a vanilla fine-tune seeded with S, and every method's run with unlearning seed S. By
default every training stage runs until its forget rows reach the same normalised forgetting
(``until_forgotten``, with ``max_steps`` as the budget), so methods are compared by what reaching it cost.

Layout of ``OUT``::

    compare.json                the frozen protocol and the wall time of every step done
    seed_S/data, seed_S/tiny, seed_S/vanilla
    seed_S/run_<method>/        an ``icu-bench run`` dir (its report/report.json is read)
    comparison.json, comparison.md      means and seed-level intervals, paired differences, rankings
    leaderboard.json, leaderboard.md    the same as a leaderboard file (icu_tasks.report.leaderboard)

Resumable: a step whose output is complete is skipped (data, tiny model, vanilla model, a finished run), and an
interrupted run resumes at its last complete stage. A second call must use the same protocol (everything but
the seeds and methods, which may grow); another protocol is refused with one line.

The data generator, torch and lmms-eval are imported only inside the step that needs them, so that a bad
argument or a comparison that is already complete is answered without loading them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icu_tasks.errors import ConfigError, did_you_mean
from icu_tasks.records.files import read_record, write_record
from icu_tasks.records.layout import (
    COMPARE_JSON,
    FINETUNE_JSON,
    REPORT_JSON,
    atomic_write_json,
    atomic_write_text,
    report_dir,
)
from icu_tasks.records.provenance import package_versions
from icu_tasks.records.schedule import EvalSchedule
from icu_tasks.report.comparison import comparison_markdown
from icu_tasks.report.headline import HEADLINE
from icu_tasks.report.leaderboard import (
    PROTOCOL_KEYS,
    build_leaderboard,
    entry_from_run,
    protocol_difference,
    write_leaderboard,
)
from icu_unlearn.methods import canonical_name, get_method, list_methods
from icu_unlearn.methods.config import coerce_fields
from icu_unlearn.pipeline.rundir import RunDir
from icu_unlearn.training.finetune import FinetuneConfig
from icu_unlearn.training.stop_config import DEFAULT_CHECK_EVERY, ForgettingTarget

#: The fine-tune of every seed's vanilla model: the project's recipe, trained until every split × view is
#: known (teacher-forced exact match ≥ 0.9), ``max_steps`` only the cap.
DEFAULT_FINETUNE: dict[str, Any] = {"stop_at_accuracy": 0.9, "check_every": 50, "max_steps": 3000}
DEFAULT_TASKS = ("icu", "icu_longform", "icu_ll")


@dataclass
class CompareConfig:
    """The protocol of a comparison (recorded in ``OUT/compare.json``) and the seeds and methods to run.

    Attributes:
        seeds: the seeds (data, tiny model, vanilla fine-tune and unlearning seed of one repetition).
        methods: the unlearning methods (registry names).
        stages: forget tasks per run; the data has exactly this many.
        profiles, profiles_per_task, image_size: the data scale.
        tasks: lmms-eval tasks scored after every stage.
        until_forgotten: the normalised-forgetting target of every training stage (None: the methods'
            calibrated step budgets).
        check_every: optimizer steps between two checks of the target.
        max_steps: the step budget of every training method under ``until_forgotten`` (None: each method's
            own default).
        eval_every, eval_window: the evaluation schedule (:mod:`icu_tasks.records.schedule`).
        limit: at most this many docs per task (toy runs only).
        finetune: :class:`~icu_unlearn.training.finetune.FinetuneConfig` fields of every vanilla fine-tune
            (its ``seed`` is the comparison's seed).
        batch_size: evaluation batch size.
        device: ``cpu`` or ``cuda``.
    """

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    methods: list[str] = field(default_factory=list)
    stages: int = 8
    profiles: int = 40
    profiles_per_task: int = 2
    image_size: int = 160
    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))
    until_forgotten: float | None = 0.9
    check_every: int = DEFAULT_CHECK_EVERY
    max_steps: int | None = 300
    eval_every: int = 1
    eval_window: int | None = None
    limit: int | None = None
    finetune: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_FINETUNE))
    batch_size: int = 16
    device: str = "cpu"

    def __post_init__(self) -> None:
        from icu_tasks.data.plan import GenerateConfig  # (Faker, Pillow) only once a comparison is configured

        coerce_fields(self)
        self.methods = [canonical_name(get_method(m).name) for m in (self.methods or list_methods())]
        if len(set(self.methods)) != len(self.methods) or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError("seeds and methods must not repeat")
        if not self.seeds or any(int(s) < 0 for s in self.seeds):
            raise ConfigError(f"seeds must be one or more integers >= 0, got {self.seeds}")
        self.seeds = [int(s) for s in self.seeds]
        for seed in self.seeds:  # the data scale, checked for every seed before anything runs
            GenerateConfig(seed, self.profiles, self.stages, self.profiles_per_task, self.image_size)
        if self.until_forgotten is not None:
            ForgettingTarget(self.until_forgotten, self.check_every)
        if self.max_steps is not None and int(self.max_steps) < 1:
            raise ConfigError(f"max_steps must be >= 1, got {self.max_steps}")
        EvalSchedule(self.eval_every, self.eval_window)
        if "seed" in self.finetune:
            raise ConfigError("the fine-tune seed is the comparison's seed (--seeds); do not set it")
        known = {f.name for f in dataclasses.fields(FinetuneConfig)}
        unknown = sorted(set(self.finetune) - known)
        if unknown:
            raise ConfigError(
                f"unknown fine-tune setting(s): {', '.join(unknown)}{did_you_mean(unknown[0], known)}"
            )
        FinetuneConfig(**self.finetune)  # bad values -> ConfigError
        if self.limit is not None and int(self.limit) < 1:
            raise ConfigError(f"limit must be >= 1 or omitted, got {self.limit}")

    def protocol(self) -> dict[str, Any]:
        """The frozen protocol: what every seed and method shares (see
        :data:`icu_tasks.report.leaderboard.PROTOCOL_KEYS`)."""
        return {
            "data": {
                "profiles": self.profiles,
                "tasks": self.stages,
                "profiles_per_task": self.profiles_per_task,
                "image_size": self.image_size,
            },
            "stages": self.stages,
            "schedule": {"eval_every": self.eval_every, "eval_window": self.eval_window},
            "stop_rule": {
                "until_forgotten": self.until_forgotten,
                "check_every": self.check_every if self.until_forgotten is not None else None,
                "budget": self.max_steps if self.until_forgotten is not None else None,
            },
            "tasks": list(self.tasks),
            "limit": self.limit,
            "finetune": dict(self.finetune),
            "metrics": list(HEADLINE),
            "versions": package_versions(
                "icu-bench", "torch", "transformers", "peft", "accelerate", "lmms_eval"
            ),
        }

    def method_args(self, method: str, seed: int) -> dict[str, Any]:
        """The hyper-parameters a run of ``method`` gets: the seed, and the budget under the stop rule."""
        args: dict[str, Any] = {"seed": seed}
        if get_method(method).trains and self.until_forgotten is not None and self.max_steps is not None:
            args["max_steps"] = int(self.max_steps)
        return args


class _Ledger:
    """``OUT/compare.json``: the protocol, the seeds and methods asked for so far, and measured seconds."""

    def __init__(self, out: Path, config: CompareConfig) -> None:
        self.path = out / COMPARE_JSON
        self.record = read_record(self.path)
        protocol = config.protocol()
        if self.record:
            diff = protocol_difference(self.record["protocol"], protocol)
            if diff:
                raise ConfigError(
                    f"{out} holds a comparison made under another protocol (differs in: {', '.join(diff)}); "
                    "use another --out"
                )
            self.record["protocol"]["metrics"] = protocol["metrics"]  # the aggregation's, recomputed
        else:
            self.record = {"protocol": protocol, "seeds": [], "methods": [], "seconds": {}}
        for key, values in (("seeds", config.seeds), ("methods", config.methods)):
            self.record[key] += [v for v in values if v not in self.record[key]]
        write_record(self.path, self.record)

    def add(self, seed: int, step: str, seconds: float) -> None:
        self.record["seconds"].setdefault(str(seed), {})[step] = round(seconds, 1)
        write_record(self.path, self.record)


def _timed(ledger: _Ledger, seed: int, step: str, log: Callable[[str], None], fn: Callable[[], Any]) -> None:
    t0 = time.perf_counter()
    fn()
    ledger.add(seed, step, time.perf_counter() - t0)
    log(f"seed {seed}: {step} done in {time.perf_counter() - t0:.0f} s")


def _prepare_seed(config: CompareConfig, root: Path, seed: int, ledger: _Ledger, log: Callable) -> None:
    """Data, tiny model and vanilla fine-tune of one seed, each skipped when complete."""
    # the generator (Faker, Pillow) and torch are imported only when a step runs: see the module docstring
    from icu_tasks.data.generate import generate
    from icu_unlearn.models.tiny import build_tiny_model, corpus_from_data
    from icu_unlearn.training.finetune import finetune

    data, tiny, vanilla = root / "data", root / "tiny", root / "vanilla"
    scale = {
        "profiles": config.profiles,
        "tasks": config.stages,
        "profiles_per_task": config.profiles_per_task,
    }
    if not (data / "manifest.json").is_file():
        _timed(ledger, seed, "data", log, lambda: generate(
            data, seed=seed, image_size=config.image_size, workers=2, overwrite=True, progress=False, **scale
        ))  # fmt: skip
    if not (tiny / "config.json").is_file():
        _timed(ledger, seed, "tiny_model", log, lambda: build_tiny_model(
            tiny, corpus_from_data(data), seed=seed, overwrite=True
        ))  # fmt: skip
    if not (vanilla / FINETUNE_JSON).is_file():
        recipe = FinetuneConfig(**{**config.finetune, "seed": seed})
        _timed(ledger, seed, "finetune", log, lambda: finetune(
            tiny, data, vanilla, recipe, overwrite=True, device=config.device
        ))  # fmt: skip


def run_finished(run_dir: Path, stages: int, schedule: EvalSchedule) -> bool:
    """Whether a run dir holds every stage, every scheduled evaluation and its report."""
    rd = RunDir(run_dir)
    if not (report_dir(run_dir) / REPORT_JSON).is_file():
        return False
    stages_done = all(rd.stage_complete(k) for k in range(1, stages + 1))
    return stages_done and all(rd.eval_complete(k) for k in range(stages + 1) if schedule.scored(k, stages))


def _run_method(
    config: CompareConfig, root: Path, seed: int, method: str, ledger: _Ledger, log: Callable
) -> Path:
    """One method's run on one seed (skipped when finished); returns its run dir."""
    from icu_unlearn.pipeline.run import RunConfig, run  # lmms-eval and torch only when a run starts

    run_dir = root / f"run_{method}"
    schedule = EvalSchedule(config.eval_every, config.eval_window)
    if run_finished(run_dir, config.stages, schedule):
        log(f"seed {seed}: {method} complete, skipped")
        return run_dir
    rc = RunConfig(
        base=str(root / "vanilla"), data=str(root / "data"), method=method, stages=config.stages,
        method_args=config.method_args(method, seed), tasks=list(config.tasks), batch_size=config.batch_size,
        limit=config.limit, device=config.device, name=f"{method}_seed{seed}", eval_every=config.eval_every,
        eval_window=config.eval_window, until_forgotten=config.until_forgotten, check_every=config.check_every,
    )  # fmt: skip
    _timed(ledger, seed, f"run_{method}", log, lambda: run(rc, run_dir, log=lambda m: log(f"    {m}")))
    return run_dir


def compare(config: CompareConfig, out: str | Path, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) every seed × method, then aggregate; returns the comparison dict."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ledger = _Ledger(out, config)
    for seed in config.seeds:
        root = out / f"seed_{seed}"
        _prepare_seed(config, root, seed, ledger, log)
        for method in config.methods:
            log(f"== seed {seed}: {method}, {config.stages} stages")
            _run_method(config, root, seed, method, ledger, log)
    return aggregate_dir(out, log=log)


def aggregate_dir(out: str | Path, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Read every finished run under ``out`` and write comparison.json/.md and leaderboard.json/.md."""
    out = Path(out)
    record = read_record(out / COMPARE_JSON, required=True)
    protocol = record["protocol"]
    schedule = EvalSchedule(protocol["schedule"]["eval_every"], protocol["schedule"]["eval_window"])
    entries, hashes = [], {}
    for seed in record["seeds"]:
        for method in record["methods"]:
            run_dir = out / f"seed_{seed}" / f"run_{method}"
            if run_finished(run_dir, protocol["stages"], schedule):
                entry = entry_from_run(run_dir, seed=seed, source="icu-bench compare", root=out)
                hashes[str(seed)] = entry["data_hash"]
                entries.append(entry)
    board = build_leaderboard({**protocol, "data": {**protocol["data"], "seeds": hashes}}, entries)
    write_leaderboard(board, out / "leaderboard.json")
    atomic_write_json(out / "comparison.json", board["aggregate"])
    atomic_write_text(out / "comparison.md", comparison_markdown(board["aggregate"]))
    log(f"comparison of {len(entries)} run(s): {out / 'comparison.md'}")
    return board["aggregate"]


__all__ = ["DEFAULT_FINETUNE", "DEFAULT_TASKS", "CompareConfig", "PROTOCOL_KEYS", "aggregate_dir", "compare"]
