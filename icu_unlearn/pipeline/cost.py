"""What a run will cost before it is paid: requests per stage and in total, and an estimated wall time.

:func:`plan_requests` builds the run's lmms-eval tasks once (no model; the task hooks read the data dir) and
counts, per task, the requests of every doc with its family (forget / retain / holdout / utility, from the
doc's ``split``) and kind (``generate`` for ``generate_until``; ``loglikelihood`` for loglikelihood and
multiple-choice tasks, one request per choice). :meth:`RequestPlan.stage` applies the evaluation schedule
(:mod:`icu_tasks.records.schedule`) and ``limit`` to give the requests scored at stage k.

:func:`measure` times real work on this machine: ``batches`` batches of every task through lmms-eval with the
loaded scoring model (model time per request and lmms-eval's per-evaluation overhead, after one untimed
warm-up batch), and a training of stage 1 for ``batches`` optimizer steps (in a scratch dir that is removed)
for the per-step and fixed cost of a stage. :func:`estimate` combines both.
``icu-bench run --dry-run`` prints it and writes nothing; a real run logs it and records it in ``RUN/cost.json``
(plus the measured seconds of every stage as the run proceeds).
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from icu_tasks.records.schedule import EvalSchedule, format_tasks
from icu_unlearn.methods import build_method
from icu_unlearn.scoring.evaluate import load_scorer, task_env
from icu_unlearn.scoring.preflight import check_tasks, task_manager
from icu_unlearn.training.unlearn import run_stage

#: Family of a doc from its ``split`` column.
FAMILIES: dict[str, str] = {
    "forget": "forget",
    "retain_eval": "retain",
    "retain_train": "retain",
    "holdout": "holdout",
    "utility": "utility",
}
KINDS: tuple[str, ...] = ("generate", "loglikelihood")


@dataclass
class TaskDocs:
    """One lmms-eval task: its kind and, per doc in lmms-eval's order, (family, forget task, requests)."""

    name: str
    kind: str
    docs: list[tuple[str, int, int]]


@dataclass
class RequestPlan:
    """The requests of every scored stage of a run (see the module docstring)."""

    tasks: list[TaskDocs]
    stages: int
    n_forget_tasks: int
    schedule: EvalSchedule
    limit: int | None = None

    def stage(self, k: int) -> dict[str, int]:
        """Requests scored at stage ``k`` per task (empty when the schedule skips the stage)."""
        if not self.schedule.scored(k, self.stages):
            return {}
        keep = self.schedule.forget_tasks(k, self.n_forget_tasks)
        out = {}
        for task in self.tasks:
            docs = [d for d in task.docs if keep is None or d[0] != "forget" or d[1] in keep]
            out[task.name] = sum(d[2] for d in docs[: self.limit])
        return out

    def by_family(self, k: int) -> dict[tuple[str, str], int]:
        """Requests scored at stage ``k`` per (family, kind)."""
        if not self.schedule.scored(k, self.stages):
            return {}
        keep = self.schedule.forget_tasks(k, self.n_forget_tasks)
        out: dict[tuple[str, str], int] = defaultdict(int)
        for task in self.tasks:
            docs = [d for d in task.docs if keep is None or d[0] != "forget" or d[1] in keep]
            for family, _, n in docs[: self.limit]:
                out[(family, task.kind)] += n
        return dict(out)

    def totals(self) -> dict[tuple[str, str], int]:
        """Requests of the whole run per (family, kind)."""
        out: dict[tuple[str, str], int] = defaultdict(int)
        for k in range(self.stages + 1):
            for key, n in self.by_family(k).items():
                out[key] += n
        return dict(out)


def _kind(task: Any) -> str:
    return "generate" if str(task.OUTPUT_TYPE).startswith("generate") else "loglikelihood"


def _requests_per_doc(task: Any, doc: dict) -> int:
    if task.OUTPUT_TYPE != "multiple_choice":
        return 1
    per_choice = 2 if "acc_mutual_info" in getattr(task, "_metric_fn_list", {}) else 1
    return per_choice * len(task.doc_to_choice(doc))


def plan_requests(config: Any) -> RequestPlan:
    """Count the requests of ``config`` (a :class:`~icu_unlearn.pipeline.run.RunConfig`): no model is loaded."""
    from lmms_eval.evaluator_utils import get_task_list
    from lmms_eval.tasks import get_task_dict

    from icu_tasks.data.dataset import open_data

    check_tasks(config.tasks)
    n_forget = len(open_data(config.data).task_ids)
    tasks = []
    with task_env(config.data):
        for out in get_task_list(get_task_dict(config.tasks, task_manager())):
            task = out.task
            docs = [
                (
                    FAMILIES.get(str(d.get("split")), "other"),
                    int(d.get("forget_task") or 0),
                    _requests_per_doc(task, d),
                )
                for d in task.eval_docs
            ]
            tasks.append(TaskDocs(out.task_name, _kind(task), docs))
    return RequestPlan(tasks, config.stages, n_forget, config.schedule, config.limit)


@dataclass
class Costs:
    """Seconds measured on this machine (see :func:`measure`)."""

    per_request: dict[str, float] = field(default_factory=dict)
    eval_overhead: float = 0.0
    train_fixed: float | None = None
    train_per_step: float | None = None
    train_steps: int | None = None
    load_seconds: float = 0.0
    batches: int = 0
    requests_timed: int = 0
    device: str = "cpu"
    batch_size: int = 0

    def stage_train_seconds(self) -> float | None:
        """Estimated seconds of one training stage (fixed + per step × the config's steps)."""
        if self.train_fixed is None:
            return None
        return self.train_fixed + (self.train_per_step or 0.0) * (self.train_steps or 0)


def _timed_requests(lm: Any, seconds: dict[str, float], counts: dict[str, int]) -> None:
    """Wrap ``lm``'s request methods (instance attributes) so model time and requests are added up."""
    for reqtype in ("generate_until", "loglikelihood"):
        method = getattr(lm, reqtype)

        def timed(requests, _method=method, _type=reqtype):
            start = time.perf_counter()
            out = _method(requests)
            seconds[_type] += time.perf_counter() - start
            counts[_type] += len(requests)
            return out

        setattr(lm, reqtype, timed)


def _untimed(lm: Any) -> None:
    for reqtype in ("generate_until", "loglikelihood"):
        lm.__dict__.pop(reqtype, None)


def _evaluate(lm: Any, tasks: list[str], limit: int) -> None:
    from lmms_eval.evaluator import simple_evaluate

    simple_evaluate(
        model=lm, tasks=tasks, task_manager=task_manager(), limit=limit, log_samples=False,
        random_seed=0, numpy_random_seed=1234, torch_random_seed=1234, fewshot_random_seed=1234,
        verbosity="ERROR",
    )  # fmt: skip


def measure_scoring(lm: Any, config: Any, plan: RequestPlan, batches: int, costs: Costs) -> None:
    """Per-request model seconds of every task and lmms-eval's per-evaluation overhead (``batches`` batches)."""
    limit = lm.batch_size * batches
    with task_env(config.data):
        _evaluate(lm, [plan.tasks[0].name], lm.batch_size)  # warm-up (first calls, caches), not timed
        overhead = 0.0
        for task in plan.tasks:
            seconds: dict[str, float] = defaultdict(float)
            counts: dict[str, int] = defaultdict(int)
            _timed_requests(lm, seconds, counts)
            start = time.perf_counter()
            try:
                _evaluate(lm, [task.name], limit)
            finally:
                _untimed(lm)
            model_s = sum(seconds.values())
            overhead += time.perf_counter() - start - model_s
            n = sum(counts.values())
            costs.per_request[task.name] = model_s / n if n else math.nan
            costs.requests_timed += n
    costs.eval_overhead = overhead  # every task built and aggregated once: one scored stage's overhead


def measure_training(config: Any, batches: int, costs: Costs, allow_data_mismatch: bool) -> None:
    """Train stage 1 for ``batches`` optimizer steps in a scratch dir (removed): per-step and fixed seconds.

    Per step: the Trainer's own ``train_runtime`` over the steps (its first step's warm-up included, so it
    errs high); fixed: the rest of the stage (loading, data, saving). A method that does not train (masks
    only) is timed as a whole stage.
    """

    method = build_method(config.method, **config.method_args)
    steps = getattr(method.config, "max_steps", None) if method.trains else None
    if steps:
        method = build_method(config.method, **(dict(config.method_args) | {"max_steps": batches}))
    with tempfile.TemporaryDirectory(prefix="icu-cost-") as scratch:
        start = time.perf_counter()
        result = run_stage(method, config.base, config.data, 1, scratch,
                           device=config.device, allow_data_mismatch=allow_data_mismatch)  # fmt: skip
        total = time.perf_counter() - start
    runtime = next(
        (e["train_runtime"] for e in result.record.get("log_history", []) if "train_runtime" in e), None
    )
    if steps and runtime is not None:
        done = int(result.record.get("steps") or batches)
        costs.train_per_step = float(runtime) / done
        costs.train_fixed = max(total - float(runtime), 0.0)
        costs.train_steps = int(steps)
    else:
        costs.train_fixed = total


def measure(
    config: Any, plan: RequestPlan, batches: int, *, lm: Any = None, allow_data_mismatch: bool = False
) -> Costs:
    """Measure scoring and training costs on this machine (loads the base model unless ``lm`` is given)."""

    costs = Costs(batches=batches, device=str(config.device or "auto"), batch_size=config.batch_size)
    if lm is None:
        lm, costs.load_seconds = load_scorer(config)
    costs.device = lm._device_name
    measure_scoring(lm, config, plan, batches, costs)
    measure_training(config, batches, costs, allow_data_mismatch)
    return costs


def _seconds(plan: RequestPlan, costs: Costs | None, k: int) -> tuple[float | None, float | None]:
    """Estimated (training, scoring) seconds of stage ``k`` (None without a measurement)."""
    if costs is None:
        return None, None
    train = costs.stage_train_seconds() if k >= 1 else 0.0
    requests = plan.stage(k)
    score = None
    if requests:
        score = costs.eval_overhead + sum(n * costs.per_request.get(t, math.nan) for t, n in requests.items())
    return train, score or 0.0


def estimate(plan: RequestPlan, costs: Costs | None) -> dict[str, Any]:
    """The JSON record of a run's cost: requests per stage and in total, and the estimated seconds."""
    per_stage, totals = [], defaultdict(int)
    train_total = score_total = 0.0
    for k in range(plan.stages + 1):
        fam = plan.by_family(k)
        train, score = _seconds(plan, costs, k)
        per_stage.append({
            "stage": k, "scored": bool(fam), "requests": sum(fam.values()),
            "by_family": {f"{f}/{kind}": n for (f, kind), n in sorted(fam.items())},
            "forget_tasks": _forget_label(plan, k), "train_s": train, "score_s": score,
        })  # fmt: skip
        for key, n in fam.items():
            totals[f"{key[0]}/{key[1]}"] += n
        train_total += train or 0.0
        score_total += score or 0.0
    record: dict[str, Any] = {
        "stages": plan.stages,
        "forget_tasks_in_data": plan.n_forget_tasks,
        "schedule": {"every": plan.schedule.every, "window": plan.schedule.window,
                     "description": plan.schedule.describe()},
        "limit": plan.limit,
        "tasks": {t.name: t.kind for t in plan.tasks},
        "scored_stages": sum(1 for s in per_stage if s["scored"]),
        "requests_total": sum(totals.values()),
        "requests_by_family": dict(sorted(totals.items())),
        "per_stage": per_stage,
        "measured": None,
        "estimate_s": None,
    }  # fmt: skip
    if costs is not None:
        record["measured"] = dataclasses.asdict(costs)
        record["estimate_s"] = {
            "load_model": costs.load_seconds,
            "training": train_total,
            "scoring": score_total,
            "total": costs.load_seconds + train_total + score_total,
        }
    return record


def _forget_label(plan: RequestPlan, k: int) -> str:

    if not plan.schedule.scored(k, plan.stages):
        return "-"
    keep = plan.schedule.forget_tasks(k, plan.n_forget_tasks)
    return "all" if keep is None else format_tasks(keep)


def _dur(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "n/a"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _shown_stages(rows: list[dict[str, Any]]) -> list[int | None]:
    """Every stage for short runs; else stages 0-3, the next 3 scored ones and the last 2, gaps as None."""
    n = len(rows)
    if n <= 12:
        return list(range(n))
    middle = [k for k in range(4, n - 2) if rows[k]["scored"]][:3]
    shown: list[int | None] = []
    for k in [0, 1, 2, 3, *middle, n - 2, n - 1]:
        if shown and shown[-1] is not None and k > shown[-1] + 1:
            shown.append(None)
        shown.append(k)
    return shown


def format_estimate(record: dict[str, Any]) -> list[str]:
    """The human-readable lines of an :func:`estimate` record."""
    lines = [
        f"stages: {record['stages']} (forget tasks in the data: {record['forget_tasks_in_data']}); "
        f"schedule: {record['schedule']['description']}; scored stages: {record['scored_stages']}",
        f"tasks: {', '.join(f'{t} ({k})' for t, k in record['tasks'].items())}"
        + (f"; limit {record['limit']} docs per task" if record["limit"] else ""),
        "",
        f"{'stage':>6} {'forget tasks':>12} {'requests':>9}  {'by family/kind':<58} {'train':>9} {'score':>9}",
    ]
    rows = record["per_stage"]
    for k in _shown_stages(rows):
        if k is None:
            lines.append(f"{'…':>6}")
            continue
        s = rows[k]
        fam = ", ".join(f"{key} {n}" for key, n in s["by_family"].items()) or "not scored (schedule)"
        lines.append(
            f"{k:>6} {s['forget_tasks']:>12} {s['requests']:>9}  {fam:<58} {_dur(s['train_s']):>9} "
            f"{_dur(s['score_s']) if s['scored'] else '-':>9}"
        )
    lines += ["", f"requests in total: {record['requests_total']:,}"]
    lines += [f"  {key:<24} {n:>12,}" for key, n in record["requests_by_family"].items()]
    est, m = record["estimate_s"], record["measured"]
    if est is None:
        return lines + ["estimated wall time: not measured (--measure-batches 0)"]
    per_req = ", ".join(f"{t} {v * 1000:.1f} ms" for t, v in m["per_request"].items())
    train = (
        f"{_dur(m['train_fixed'])} fixed + {m['train_per_step']:.3f} s/step × {m['train_steps']} steps"
        if m["train_per_step"] is not None
        else f"{_dur(m['train_fixed'])} per stage"
    )
    return lines + [
        "",
        f"estimated wall time: {_dur(est['total'])} (load {_dur(est['load_model'])}, training "
        f"{_dur(est['training'])}, scoring {_dur(est['scoring'])})",
        f"  an ESTIMATE from {m['batches']} measured batch(es) of {m['batch_size']} per task "
        f"({m['requests_timed']} requests) and a stage-1 training of as many steps on this machine ({m['device']}):",
        f"  per request: {per_req}; lmms-eval overhead {_dur(m['eval_overhead'])} per scored stage",
        f"  training per stage: {train}",
    ]
