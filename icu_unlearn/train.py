"""Fine-tune (→ the vanilla model, stage 0) and unlearning stages (stage K from stage K−1 → ``RUN/stage_K``).

Both run on the shared :class:`~icu_unlearn.trainer.IcuTrainer` (a transformers ``Trainer``), are seeded, show
tqdm progress, and work unchanged under ``accelerate launch --num_processes N`` (data parallel; the configured
batch size is the global one, split over the processes; only the main process writes).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icu_tasks.errors import ConfigError, TrainingError
from icu_unlearn.adapters import lora_model as _lora_model
from icu_unlearn.distributed import is_main, world_size
from icu_unlearn.methods.base import LM_LORA_TARGETS, _non_negative, _positive, check_scheduler

#: Vision tower and projector parameters (own learning rate and weight decay in the full fine-tune).
VISION_PARAMS = re.compile(r"(vision_tower|multi_modal_projector|visual|vision_model)\.")
#: The fine-tune's record in the vanilla model dir.
FINETUNE_JSON = "finetune.json"


@dataclass
class FinetuneConfig:
    """Fine-tune hyper-parameters (defaults: the tiny-model recipe measured in the README).

    Attributes:
        mode: ``full`` (every weight; what a randomly initialised tiny model needs — LoRA cannot memorise on
            it) or ``lora`` (MLLMU-Bench: LoRA r=16, α=16, dropout 0.05 on the language model, merged at the end;
            use it for real pretrained models with e.g. ``learning_rate=2e-5, batch_size=4``).
        learning_rate: AdamW learning rate of the language model (and of the LoRA weights in ``lora`` mode).
        vision_learning_rate: learning rate of the vision tower and projector (``full`` mode).
        vision_weight_decay: their weight decay (without it the projected image features blow up and VQA
            never learns — measured).
        weight_decay: weight decay of the language model.
        vqa_repeat: how often each image (VQA) row appears in an epoch: the image view needs about twice the
            epochs of the text view (the portrait is its only cue of who is asked about).
        batch_size: global batch size; max_steps: optimizer steps. Measured on a 40-profile set (2 cores):
            800 × 64, ``vqa_repeat=3``, constant lr after 40 warmup steps → QA 0.97, VQA 0.98 exact match
            (every forget/retain row); the same with linear decay → 0.95 / 0.59 (the image view is learnt
            late, when a decaying lr is already small); VQA rows alone, linear, 450 × 64 → 0.97.
        warmup_steps, max_grad_norm.
        lr_scheduler: a transformers scheduler name (``linear``, ``cosine``, ``constant``…).
        lora_r, lora_alpha, lora_dropout, lora_target_modules: the adapter of ``lora`` mode.
        seed: seeds initialisation, data order and dropout.
        stop_at_accuracy: the stopping rule "train until it knows the data" (0 = off: train ``max_steps``).
            Every ``check_every`` steps each split × view group (forget, retain-train, retain-eval, utility ×
            image, text) is scored by teacher-forced exact match (:mod:`icu_unlearn.knowledge`); training stops
            as soon as every group reaches this value. ``max_steps`` is then a cap: reaching it first is an
            error that names the scores, and nothing is saved.
        check_every: optimizer steps between two checks of the stopping rule.
    """

    mode: str = field(
        default="full",
        metadata={
            "help": "full (every weight; what a random tiny model needs) or lora (LoRA on the language model, merged at the end)."
        },
    )
    learning_rate: float = field(
        default=2e-3,
        metadata={
            "help": "AdamW learning rate of the language model (and of the LoRA weights in lora mode)."
        },
    )
    vision_learning_rate: float = field(
        default=5e-4, metadata={"help": "learning rate of the vision tower and projector (full mode)."}
    )
    vision_weight_decay: float = field(
        default=0.1,
        metadata={"help": "weight decay of the vision tower and projector (without it VQA never learns)."},
    )
    weight_decay: float = field(default=0.0, metadata={"help": "weight decay of the language model."})
    batch_size: int = field(default=64, metadata={"help": "global batch size."})
    max_steps: int = field(
        default=800, metadata={"help": "optimizer steps (a cap when --stop-at-accuracy is set)."}
    )
    vqa_repeat: int = field(
        default=3, metadata={"help": "how often each image (VQA) row appears in an epoch."}
    )
    warmup_steps: int = field(default=40, metadata={"help": "linear warm-up steps before the schedule."})
    lr_scheduler: str = field(
        default="constant_with_warmup",
        metadata={"help": "a transformers scheduler name (linear, cosine, constant...)."},
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank of lora mode."})
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA scaling alpha of lora mode."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout of lora mode."})
    lora_target_modules: str = field(
        default=LM_LORA_TARGETS, metadata={"help": "regex of the module names that get LoRA in lora mode."}
    )
    seed: int = field(default=0, metadata={"help": "seeds initialisation, data order and dropout."})
    stop_at_accuracy: float = field(
        default=0.0,
        metadata={
            "help": "stop once every split x view group reaches this teacher-forced exact match (0 = off)."
        },
    )
    check_every: int = field(
        default=50, metadata={"help": "optimizer steps between two checks of the stopping rule."}
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.stop_at_accuracy <= 1.0:
            raise ConfigError(f"stop_at_accuracy must be in [0, 1], got {self.stop_at_accuracy}")
        if self.mode not in ("full", "lora"):
            raise ConfigError(f"fine-tune mode must be 'full' or 'lora', got {self.mode!r}")
        _positive(
            self,
            "learning_rate",
            "vision_learning_rate",
            "batch_size",
            "max_steps",
            "vqa_repeat",
            "lora_r",
            "lora_alpha",
            "check_every",
        )
        _non_negative(self, "vision_weight_decay", "weight_decay", "warmup_steps", "max_grad_norm", "seed")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        check_scheduler(self.lr_scheduler)


def _schedule(cfg: Any) -> dict[str, Any]:
    """The optimisation settings every training config (fine-tune or method) passes to the Trainer."""
    names = (
        "max_steps",
        "batch_size",
        "learning_rate",
        "weight_decay",
        "max_grad_norm",
        "warmup_steps",
        "seed",
    )
    return {**{name: getattr(cfg, name) for name in names}, "lr_scheduler_type": cfg.lr_scheduler}


# ----------------------------------------------------------------------------------------------- fine-tune


def finetune(
    model_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: FinetuneConfig | None = None,
    *,
    overwrite: bool = False,
    device: str | None = None,
) -> Path:
    """Fine-tune ``model_dir`` on every QA row of ``data_dir`` and save the vanilla model to ``out_dir``.

    The result is a full model dir (merged weights as safetensors, the processor, ``finetune.json``), written
    to a temporary sibling and renamed. Returns ``out_dir``.
    """
    import torch
    from transformers import set_seed

    from icu_tasks.data.dataset import open_data
    from icu_unlearn.models import load_base
    from icu_unlearn.progress import train_quietly
    from icu_unlearn.stage import check_changed, check_writable, snapshot_trainable, versions, weight_changes
    from icu_unlearn.trainer import NLLObjective, training_arguments
    from icu_unlearn.training_data import Collator, ExampleDataset, finetune_examples

    cfg = config or FinetuneConfig()
    out = Path(out_dir)
    check_writable(out, overwrite)
    data = open_data(data_dir)
    examples = finetune_examples(data, cfg.vqa_repeat)
    set_seed(cfg.seed)
    model, processor = load_base(model_dir, device=device)
    model.train()
    optimizer = None
    if cfg.mode == "lora":
        model = _lora_model(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)
    else:
        vision = [p for n, p in model.named_parameters() if VISION_PARAMS.search(n)]
        text = [p for n, p in model.named_parameters() if not VISION_PARAMS.search(n)]
        groups = [{"params": text, "lr": cfg.learning_rate, "weight_decay": cfg.weight_decay}]
        if vision:
            groups.append(
                {"params": vision, "lr": cfg.vision_learning_rate, "weight_decay": cfg.vision_weight_decay}
            )
        optimizer = torch.optim.AdamW(groups)
    before = snapshot_trainable(model)
    collator = Collator(processor)
    stopper = None
    if cfg.stop_at_accuracy > 0:
        from icu_unlearn.knowledge import StopWhenKnown, check_groups

        stopper = StopWhenKnown(check_groups(data), collator, cfg.stop_at_accuracy, cfg.check_every)
    with tempfile.TemporaryDirectory(prefix="icu-finetune-") as scratch:
        args = training_arguments(
            scratch,
            **_schedule(cfg),
            device=device,
            find_unused_parameters=cfg.mode == "full",
        )
        start = time.perf_counter()
        trainer = train_quietly(
            model,
            NLLObjective(),
            ExampleDataset(examples),
            collator,
            args,
            optimizer,
            callbacks=[stopper] if stopper else None,
        )
        seconds = time.perf_counter() - start
    if stopper is not None and stopper.reached_step is None:
        from icu_unlearn.knowledge import format_scores

        raise TrainingError(
            f"the model did not learn the data: after the cap of {cfg.max_steps} steps teacher-forced exact "
            f"match is {format_scores(stopper.last_scores)}, below the target {cfg.stop_at_accuracy} "
            "(raise --max-steps or lower --stop-at-accuracy); nothing was saved"
        )
    changed = check_changed(weight_changes(trainer.model, before), "fine-tune")
    model = trainer.model
    if cfg.mode == "lora":
        model = model.merge_and_unload()
    if is_main():
        record = {
            "format_version": 1,
            "base_model": str(Path(model_dir).resolve()),
            "data_dir": str(data.root),
            "data_hash": data.data_hash,
            "config": dataclasses.asdict(cfg),
            "rows": len(set(e.id for e in examples)),
            "examples_per_epoch": len(examples),
            "world_size": world_size(),
            "train_seconds": round(seconds, 2),
            "changed_modules": len(changed),
            "log_history": trainer.history.history,
            "steps": int(trainer.state.global_step),
            "stopping": _stopping_record(cfg, stopper),
            "versions": versions(),
        }
        _save_model_dir(out, model, processor, record, overwrite)
    trainer.accelerator.wait_for_everyone()
    return out


def _stopping_record(cfg: FinetuneConfig, stopper: Any) -> dict[str, Any] | None:
    """The stopping rule's outcome for finetune.json (``None`` when the rule is off)."""
    if stopper is None:
        return None
    return {
        "rule": "every group (split x view) reaches stop_at_accuracy teacher-forced exact match",
        "target": cfg.stop_at_accuracy,
        "check_every": cfg.check_every,
        "reached_step": stopper.reached_step,
        "final_scores": stopper.last_scores,
        "checks": stopper.history,
    }


def _save_model_dir(out: Path, model: Any, processor: Any, record: dict, overwrite: bool) -> None:
    from icu_unlearn.identity import MODEL_ID_KEY, compute_model_id
    from icu_unlearn.stage import write_stage_dir

    def fill(tmp: Path) -> None:
        model.eval()
        model.save_pretrained(str(tmp))
        processor.save_pretrained(str(tmp))
        record[MODEL_ID_KEY] = compute_model_id(tmp)  # content identity (config + weights), computed once
        (tmp / FINETUNE_JSON).write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")

    write_stage_dir(out, fill, overwrite=overwrite, required=FINETUNE_JSON)


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
) -> StageResult:
    """Forget forget task ``stage`` starting from stage ``stage − 1``, write ``run_dir/stage_K``, return it all.

    Args:
        method: an :class:`~icu_unlearn.methods.base.UnlearningMethod` instance (see ``methods.build_method``).
        base: the vanilla model dir (stage 0).
        data_dir: the ICU-Bench data dir the vanilla model was fine-tuned on.
        stage: K ≥ 1; the stage forgets forget task K.
        run_dir: where ``stage_K/`` is written.
        parent: the stage K−1 dir (default ``run_dir/stage_{K−1}``; none for K = 1, which starts with a fresh
            LoRA adapter on the vanilla model).
        overwrite: replace an existing ``stage_K``.
        device: ``cpu``, ``cuda``… (default: CUDA when available).
        allow_data_mismatch: accept data other than what the vanilla model was fine-tuned on.
        callbacks: extra ``TrainerCallback`` objects for a training method's loop (e.g.
            :class:`icu_unlearn.knowledge.StopWhenForgotten`); ``stage.json`` records the steps actually run.
        loaded: ``(model, processor)`` of ``base`` already in memory (``icu-bench sweep`` loads it once); the
            stage adapts the model in place, so pass a copy.
    """
    from icu_unlearn.preflight import check_stage_inputs

    inputs = check_stage_inputs(
        base,
        data_dir,
        stage,
        run_dir,
        parent=parent,
        overwrite=overwrite,
        allow_data_mismatch=allow_data_mismatch,
    )
    k, final, data, parent_dir, parent_record = (
        inputs.k, inputs.final, inputs.data, inputs.parent_dir, inputs.parent_record,
    )  # fmt: skip
    # Heavy imports only after the cheap checks: bad input fails in well under a second.
    from transformers import set_seed

    from icu_unlearn.models import apply_masks, load_base, read_masks, remove_masks
    from icu_unlearn.stage import check_new_masks, mask_summary, stage_record, write_stage
    from icu_unlearn.training_data import stage_data

    set_seed(method.config.seed)
    model, processor = loaded if loaded is not None else load_base(base, device=device)
    sd = stage_data(data, [k], processor)
    model = method.attach_adapter(model, sd, parent_dir)
    parent_masks = read_masks(parent_dir) if parent_dir is not None else {}
    start = time.perf_counter()
    if method.trains:
        changes, history, steps = _train_stage(method, model, sd, device, callbacks)
        masks = parent_masks
    else:
        changes, history, steps = {}, [], 0
        model.eval()
        masks = method.output_masks(model, sd, parent_masks)
        if not method.stage_info().get("cap_reached"):
            check_new_masks(masks, parent_masks)
        remove_masks(model)
        apply_masks(model, masks)
    seconds = time.perf_counter() - start
    record = stage_record(
        method,
        k,
        data,
        base,
        parent_dir,
        parent_record,
        model,
        sd,
        changes=changes,
        masks=mask_summary(masks, parent_masks),
        seconds=seconds,
        history=history,
    )
    record["steps"] = steps
    if is_main():
        write_stage(final, model, masks, method.artifacts(), record, overwrite=overwrite)
    _barrier()
    model.eval()
    return StageResult(final, record, model, processor)


def _train_stage(
    method: Any, model: Any, sd: Any, device: str | None, callbacks: list | None = None
) -> tuple[dict, list, int]:
    """Run the method's callbacks on the shared Trainer; returns (changed modules with norms, loss log, steps).

    The loss shows in the progress bar, not as printed dicts (:func:`icu_unlearn.progress.train_quietly`).
    """
    from icu_unlearn.progress import train_quietly
    from icu_unlearn.stage import check_changed, snapshot_trainable, weight_changes
    from icu_unlearn.trainer import training_arguments
    from icu_unlearn.training_data import step_batches

    cfg = method.config
    model.train()
    method.prepare(model, sd)
    before = snapshot_trainable(model)
    dataset = step_batches(sd, cfg, method.uses_retain, world_size())
    with tempfile.TemporaryDirectory(prefix="icu-unlearn-") as scratch:
        args = training_arguments(
            scratch,
            **{**_schedule(cfg), "batch_size": world_size()},  # one StepBatches item per process
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            train_sampling_strategy="sequential",
            device=device,
        )
        trainer = train_quietly(model, method, dataset, sd.collator, args, callbacks=callbacks)
    changed = check_changed(weight_changes(trainer.model, before))
    return changed, trainer.history.history, int(trainer.state.global_step)


def _barrier() -> None:
    """Wait for every process of a distributed job (no-op otherwise)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
