"""Every check that can fail before a model is loaded or a file is written, for each command.

``unlearn`` (:func:`check_stage_inputs`), ``run`` (:func:`check_run_inputs`) and ``icu_hf`` scoring
(:func:`check_scoring_inputs`) call these first, so bad input costs well under a second, makes no network
call and leaves no run dir, lock, eval dir or stage behind. What is checked:

* the base model dir exists and has ``config.json`` (or is a hub id already in the local HF cache);
* the data dir is a valid ICU-Bench data dir and has the stage's forget task;
* the data hash equals the one the vanilla model was fine-tuned on (``finetune.json``), the one the parent
  stage / the scored stage was trained on (``stage.json``) and the one the run was started with
  (``run.json``) — unless the mismatch is explicitly allowed;
* a parent or scored stage is complete, safetensors, and was trained on this base model (by content);
* the run dir's config (method, stages, hyper-parameters, tasks, base model id, data hash, device) is the
  recorded one.

No torch import, except the last step of :func:`check_run_inputs`, which resolves the device ``auto``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from icu_tasks.errors import ConfigError, DataError, StageError, did_you_mean
from icu_tasks.paths import default_data_dir, task_names, task_yamls_dir
from icu_tasks.records.provenance import ALLOW_FLAG, manifest_hash
from icu_unlearn.methods import build_method
from icu_unlearn.models.identity import check_base_data, check_stage_data, model_id, stage_matches_base
from icu_unlearn.models.loading import ADAPTER_CONFIG, check_adapter_files, resolve_device, resolve_model_dir
from icu_unlearn.training.stop_config import DEFAULT_CHECK_EVERY


def check_scoring_inputs(
    pretrained: str | os.PathLike, adapter: str | os.PathLike | None, *, allow_data_mismatch: bool = False
) -> Path:
    """What ``icu_hf`` checks before loading: the model dir, the stage, and the data in ``$ICU_DATA_DIR``.

    The data check reads only the data dir's ``manifest.json`` (the tasks validate the rest when lmms-eval
    builds them); without a readable manifest it is skipped, so an ``icu_hf`` run of other tasks needs no data.
    Returns the model dir.
    """

    model_dir = resolve_model_dir(pretrained)
    if adapter:
        stage = Path(adapter)
        if not stage.is_dir():
            raise StageError(f"stage dir not found: {stage}")
        if (stage / ADAPTER_CONFIG).is_file():
            check_adapter_files(stage, model_dir)
        else:  # a masks-only stage: its record still names the base model
            stage_matches_base(stage, model_dir)
    data_dir = default_data_dir().resolve()
    actual = manifest_hash(data_dir)
    if actual:
        flag = "allow_data_mismatch=true"
        if adapter:
            _check(check_stage_data, adapter, actual, data_dir, allow_data_mismatch, flag)
        _check(check_base_data, model_dir, actual, data_dir, allow_data_mismatch, flag)
    return model_dir


def _check(check: Any, what: Any, actual: str, data_dir: Path, allow: bool, flag: str) -> None:
    """Run a data check and name the ``icu_hf`` model_arg (not the CLI flag) in its message."""

    try:
        check(what, actual, data_dir, allow=allow)
    except DataError as err:
        raise DataError(
            f"icu_hf: {str(err).replace(ALLOW_FLAG, flag)} (data dir from $ICU_DATA_DIR)"
        ) from None


def check_run_inputs(
    config: Any, run_dir: Any, *, overwrite: bool, allow_data_mismatch: bool
) -> tuple[Any, dict]:
    """Validate an ``icu-bench run``; returns the opened data and the ``run.json`` record to write."""
    from icu_tasks.data.dataset import open_data

    base_dir = resolve_model_dir(config.base)
    data = open_data(config.data)
    if config.stages > len(data.task_ids):
        raise ConfigError(
            f"stages={config.stages} but {config.data} has only {len(data.task_ids)} forget tasks"
        )
    check_base_data(base_dir, data.data_hash, data.root, allow=allow_data_mismatch)
    build_method(config.method, **config.method_args)
    check_tasks(config.tasks)
    if getattr(config, "utility_tasks", None):
        check_utility_task_names(config.utility_tasks)  # lmms-eval's own task index: seconds, and torch
    device = resolve_device(config.device)  # the one torch import here, after every other check
    record = config.to_dict() | {
        "name": config.name or run_dir.root.name,
        "base_model_id": model_id(base_dir),
        "data_hash": data.data_hash,
        "device": device,
    }
    _keep_older_record(record, run_dir)
    run_dir.check_config(record, overwrite=overwrite, write=False)
    return data, record


#: RunConfig fields added after run dirs were first written, with the value an older run dir implies.
ADDED_RUN_KEYS: dict[str, Any] = {
    "eval_every": 1,
    "eval_window": None,
    "until_forgotten": None,
    "check_every": DEFAULT_CHECK_EVERY,
    "dtype": "auto",
    "utility_tasks": [],
}


def _keep_older_record(record: dict, run_dir: Any) -> None:
    """Drop from ``record`` the keys an older ``run.json`` lacks while they hold the value it implies.

    A run dir written before the evaluation schedule existed scored the full matrix; resuming it with the
    default schedule is the same config, so it resumes (and its ``run.json`` stays as it was).
    """
    import json

    try:
        old = json.loads(run_dir.config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(old, dict):
        for key, implied in ADDED_RUN_KEYS.items():
            if key not in old and record.get(key) == implied:
                record.pop(key, None)


def check_tasks(tasks: list[str]) -> list[str]:
    """Refuse task names that ICU-Bench's YAMLs do not define (ConfigError with the closest name); returns them.

    Call it before any expensive work: lmms-eval itself fails with a bare ``KeyError`` deep inside
    ``simple_evaluate``, after the model is loaded. The names are what :func:`task_manager` indexes, read from
    the YAMLs by lmms-eval's rules (:func:`icu_tasks.paths.task_names`) without importing lmms-eval.
    """
    known = task_names()
    for name in tasks:
        if name not in known:
            hint = did_you_mean(name, known)
            raise ConfigError(f"unknown lmms-eval task or group '{name}'{hint} (known: {', '.join(known)})")
    return list(tasks)


_TASK_MANAGERS: dict[bool, Any] = {}


def task_manager(with_builtins: bool = False):
    """One lmms-eval TaskManager over ICU-Bench's YAMLs only (milliseconds), or with lmms-eval's own tasks too
    (``with_builtins``: seconds; for external utility tasks). Each is built once per process."""
    if with_builtins not in _TASK_MANAGERS:
        from lmms_eval.tasks import TaskManager

        _TASK_MANAGERS[with_builtins] = TaskManager(
            "WARNING", include_path=str(task_yamls_dir()), include_defaults=with_builtins
        )
    return _TASK_MANAGERS[with_builtins]


def check_utility_task_names(specs: list[str]) -> list[str]:
    """The task names of ``utility_tasks`` specs (``TASK[:METRIC]``), each known to lmms-eval (its built-in
    tasks or ICU-Bench's); an unknown one is a ConfigError with the closest name."""
    from icu_tasks.report.external import parse_utility_task

    names = [parse_utility_task(spec)[0] for spec in specs]
    if names:
        known = task_manager(with_builtins=True).all_tasks
        for name in names:
            if name not in known:
                raise ConfigError(f"unknown utility task '{name}'{did_you_mean(name, known)}")
    return names
