"""Score a loaded model with lmms-eval's Python API, writing the same files as the ``lmms-eval`` CLI.

The in-process runner calls :func:`score` once per stage with the same ``icu_hf`` model object (base model
loaded once, adapter swapped), so no stage pays lmms-eval's start-up or the model load again. Output: lmms-eval's
own ``<model>/<date>_results.json`` and ``<model>/<date>_samples_<task>.jsonl`` under ``out_dir``, written to a
temp dir first and renamed, so ``out_dir`` is complete or absent.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from icu_tasks.errors import StageError
from icu_tasks.paths import DATA_ENV
from icu_tasks.records.layout import atomic_dir
from icu_tasks.records.schedule import FORGET_TASKS_ENV, format_tasks
from icu_unlearn.models import load_base
from icu_unlearn.scoring.preflight import check_tasks, check_utility_task_names, task_manager


def load_scorer(config: Any) -> tuple[Any, float]:
    """The ``icu_hf`` model of a run (``config.base`` on ``config.device`` in ``config.dtype``, its batch size
    and answer length), loaded once for every stage, and the seconds the load took."""
    from icu_unlearn.scoring.icu_hf import IcuHF

    start = time.perf_counter()
    model, processor = load_base(config.base, device=config.device, dtype=getattr(config, "dtype", "auto"))
    lm = IcuHF.from_loaded(
        model, processor, batch_size=config.batch_size, max_new_tokens=config.max_new_tokens
    )
    return lm, time.perf_counter() - start


@contextmanager
def task_env(data_dir: str | os.PathLike, forget_tasks: Collection[int] | None = None) -> Iterator[None]:
    """``$ICU_DATA_DIR`` = ``data_dir`` and ``$ICU_FORGET_TASKS`` = ``forget_tasks`` (None: unset), restored after."""
    saved = {key: os.environ.get(key) for key in (DATA_ENV, FORGET_TASKS_ENV)}
    os.environ[DATA_ENV] = str(data_dir)
    if forget_tasks is None:
        os.environ.pop(FORGET_TASKS_ENV, None)
    else:
        os.environ[FORGET_TASKS_ENV] = format_tasks(forget_tasks)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def score(
    lm: Any,
    model_args: str,
    tasks: list[str],
    out_dir: Path,
    *,
    data_dir: Path,
    limit: int | None = None,
    forget_tasks: Collection[int] | None = None,
    utility_tasks: Collection[str] = (),
) -> dict[str, Any]:
    """Evaluate ``lm`` (an lmms-eval model object) on ``tasks``; write results + samples into ``out_dir``.

    ``model_args`` is the string the CLI would get; lmms-eval uses it only to name the output sub-folder, so
    passing the CLI's string makes both layouts identical. ``forget_tasks`` restricts the forget tasks' docs
    to those forget tasks (``$ICU_FORGET_TASKS`` for this call, see :mod:`icu_tasks.records.schedule`; None = all).
    ``utility_tasks``: extra lmms-eval tasks (``TASK[:METRIC]``, any task lmms-eval knows) scored in the same
    call (:mod:`icu_tasks.report.external`). Returns lmms-eval's results dict (without samples).
    """
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.loggers import EvaluationTracker
    from lmms_eval.utils import get_datetime_str

    check_tasks(tasks)
    extra = [name for name in check_utility_task_names(list(utility_tasks)) if name not in tasks]
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise StageError(f"{out_dir} already exists; refusing to overwrite an evaluation")
    with atomic_dir(out_dir) as tmp, task_env(data_dir, forget_tasks):
        tracker = EvaluationTracker(output_path=str(tmp))
        datetime_str = get_datetime_str()
        results = simple_evaluate(
            model=lm,
            model_args=model_args,
            tasks=[*tasks, *extra],
            task_manager=task_manager(with_builtins=bool(extra)),
            log_samples=True,
            evaluation_tracker=tracker,
            limit=limit,
            # lmms-eval CLI's default seeds (--seed 0,1234,1234,1234), so both paths draw the same numbers.
            random_seed=0,
            numpy_random_seed=1234,
            torch_random_seed=1234,
            fewshot_random_seed=1234,
            datetime_str=datetime_str,
            verbosity="WARNING",
        )
        if results is None:
            raise StageError(f"lmms-eval returned no results for tasks {tasks}")
        samples = results.pop("samples")
        tracker.save_results_aggregated(results=results, samples=samples, datetime_str=datetime_str)
        for task_name in results["configs"]:
            tracker.save_results_samples(task_name=task_name, samples=samples[task_name])
        # lmms-eval logs (rather than raises) a failed save; an eval dir without its files is not complete.
        if not any(tmp.rglob("*_results.json")):
            raise StageError(f"lmms-eval did not write its results file under {tmp}")
    return results
