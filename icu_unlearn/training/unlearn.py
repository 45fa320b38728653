"""Unlearning stages: stage K forgets forget task K, starting from stage K−1, and is written to ``RUN/stage_K``.

Stages run on the shared :class:`~icu_unlearn.training.loop.IcuTrainer` (a transformers ``Trainer``), are seeded, show
tqdm progress, and work unchanged under ``accelerate launch --num_processes N`` (data parallel; the configured
batch size is the global one, split over the processes; only the main process writes).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icu_unlearn.models import apply_masks, load_base, read_masks, remove_masks
from icu_unlearn.models.masks import mask_summary
from icu_unlearn.models.precision import check_training_dtype
from icu_unlearn.training.distributed import is_main, world_size
from icu_unlearn.training.stage_dir import (
    check_changed,
    check_stage_inputs,
    snapshot_trainable,
    stage_record,
    weight_changes,
    write_stage,
)

# ----------------------------------------------------------------------------------------------- unlearning


@dataclass
class StageResult:
    """A finished stage: its dir, the stage.json record, and the model as trained (adapter + masks applied)."""

    path: Path
    record: dict[str, Any]
    model: Any
    processor: Any


def run_stage(
    method: Any,
    base: str | os.PathLike,
    data_dir: str | os.PathLike,
    stage: int,
    run_dir: str | os.PathLike,
    *,
    parent: str | os.PathLike | None = None,
    overwrite: bool = False,
    device: str | None = None,
    allow_data_mismatch: bool = False,
    callbacks: list | None = None,
    loaded: tuple[Any, Any] | None = None,
    until_forgotten: Any = None,
    dtype: str = "auto",
) -> StageResult:
    """Forget forget task ``stage`` starting from stage ``stage − 1``, write ``run_dir/stage_K``, return it all.

    Args:
        method: an :class:`~icu_unlearn.methods.base.UnlearningMethod` instance (see ``methods.build_method``).
        base: the vanilla model dir (stage 0).
        data_dir: the ICU-Bench data dir the vanilla model was fine-tuned on.
        stage: K ≥ 1; the stage forgets forget task K.
        run_dir: where ``stage_K/`` is written.
        parent: the stage K−1 dir (default ``run_dir/stage_{K−1}``; none for K = 1: a fresh adapter).
        overwrite: replace an existing ``stage_K``.
        device: ``cpu``, ``cuda``… (default: CUDA when available).
        allow_data_mismatch: accept data other than what the vanilla model was fine-tuned on.
        callbacks: extra ``TrainerCallback`` objects for a training method's loop.
        loaded: ``(model, processor)`` of ``base`` already in memory (``icu-bench sweep``); adapted in place.
        until_forgotten: a :class:`~icu_unlearn.training.stop_config.ForgettingTarget`: train until the forget
            rows reach it (:mod:`icu_unlearn.training.stop_rule`); ``stage.json`` records ``stop_rule``.
        dtype: the precision the base is loaded and trained in (:mod:`icu_unlearn.models.precision`).
    """
    check_training_dtype(dtype, device)

    inputs = check_stage_inputs(
        base, data_dir, stage, run_dir, parent=parent, overwrite=overwrite, allow_data_mismatch=allow_data_mismatch
    )  # fmt: skip
    # Heavy imports only after the cheap checks: bad input fails in well under a second.

    loading = (base, inputs, device, loaded, until_forgotten, dtype)
    model, processor, sd, stopper = _load_stage_model(method, *loading)
    parent_masks = read_masks(inputs.parent_dir) if inputs.parent_dir is not None else {}
    start = time.perf_counter()
    callbacks = [*(callbacks or []), *([stopper] if stopper is not None and method.trains else [])]
    changes, history, steps, masks = _apply_method(method, model, sd, parent_masks, device, callbacks or None)
    record = stage_record(
        method, inputs.k, inputs.data, base, inputs.parent_dir, inputs.parent_record, model, sd,
        changes=changes, masks=mask_summary(masks, parent_masks), seconds=time.perf_counter() - start,
        history=history,
    )  # fmt: skip
    record |= {"steps": steps} | (
        {"stop_rule": _rule_record(method, stopper, model, steps)} if stopper else {}
    )
    if is_main():
        write_stage(inputs.final, model, masks, method.artifacts(), record, overwrite=overwrite)
    _barrier()
    model.eval()
    return StageResult(inputs.final, record, model, processor)


def _load_stage_model(
    method: Any,
    base: str | os.PathLike,
    inputs: Any,
    device: str | None,
    loaded: tuple[Any, Any] | None,
    until_forgotten: Any,
    dtype: str = "auto",
) -> tuple[Any, Any, Any, Any]:
    """Load the vanilla model (or take ``loaded``), build the stage data and the stop rule (its reference is
    scored on the vanilla model, before any adapter), seed and attach the stage adapter; returns
    ``(model, processor, stage data, stop rule or None)``."""
    from transformers import set_seed

    from icu_unlearn.training.data import stage_data

    model, processor = loaded if loaded is not None else load_base(base, device=device, dtype=dtype)
    sd = stage_data(inputs.data, [inputs.k], processor)
    stopper = None
    if until_forgotten is not None:
        from icu_unlearn.training.stop_rule import StopWhenForgotten, forgetting_reference, rule_examples

        forget, holdout = rule_examples(inputs.data, inputs.k)
        reference = forgetting_reference(model, sd.collator, forget, holdout)
        stopper = StopWhenForgotten(
            forget, sd.collator, reference, until_forgotten.target, until_forgotten.check_every
        )
    set_seed(method.config.seed)
    return method.attach_adapter(model, sd, inputs.parent_dir), processor, sd, stopper


def _rule_record(method: Any, stopper: Any, model: Any, steps: int) -> dict[str, Any]:
    """``stage.json``'s ``stop_rule``: what the stopped stage reached, or what a training-free stage reached."""
    if method.trains:
        return stopper.record(steps, method.config.max_steps)
    from icu_unlearn.training.stop_rule import rule_record

    after = stopper.measure(model)
    met = after["forgetting"] is not None and after["forgetting"] >= stopper.target
    note = "training-free method: one pass, measured against the target, not stopped by it"
    return rule_record(
        stopper.target, stopper.check_every, stopper.reference, after["forgetting"], after["accuracy"],
        steps=0, budget=None, met=met, note=note,
    )  # fmt: skip


def _apply_method(
    method: Any, model: Any, sd: Any, parent_masks: dict, device: str | None, callbacks: list | None
) -> tuple[dict, list, int, dict]:
    """Train (a training method) or prune (a training-free one): ``(changed modules, loss log, steps, masks)``."""
    if method.trains:
        changes, history, steps = _train_stage(method, model, sd, device, callbacks)
        return changes, history, steps, parent_masks
    return {}, [], 0, _prune_stage(method, model, sd, parent_masks)


def _prune_stage(method: Any, model: Any, sd: Any, parent_masks: dict) -> dict:
    """A training-free stage: the method's cumulative masks, applied to ``model`` in place; returns them."""

    model.eval()
    masks = method.output_masks(model, sd, parent_masks)
    remove_masks(model)
    apply_masks(model, masks)
    return masks


def _train_stage(
    method: Any, model: Any, sd: Any, device: str | None, callbacks: list | None = None
) -> tuple[dict, list, int]:
    """Run the method's callbacks on the shared Trainer; returns (changed modules with norms, loss log, steps).

    The loss shows in the progress bar, not as printed dicts (:func:`icu_unlearn.training.progress.train_quietly`).
    """
    from icu_unlearn.training.data import step_batches
    from icu_unlearn.training.loop import schedule_args, training_arguments
    from icu_unlearn.training.progress import train_quietly

    cfg = method.config
    model.train()
    method.prepare(model, sd)
    before = snapshot_trainable(model)
    dataset = step_batches(sd, cfg, method.uses_retain, world_size())
    with tempfile.TemporaryDirectory(prefix="icu-unlearn-") as scratch:
        args = training_arguments(
            scratch,
            **{**schedule_args(cfg), "batch_size": world_size()},  # one StepBatches item per process
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            train_sampling_strategy="sequential",
            device=device,
            model_dtype=model.dtype,
        )
        trainer = train_quietly(model, method, dataset, sd.collator, args, callbacks=callbacks)
    changed = check_changed(weight_changes(trainer.model, before))
    return changed, trainer.history.history, int(trainer.state.global_step)


def _barrier() -> None:
    """Wait for every process of a distributed job (no-op otherwise)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
