"""The fine-tune: the base model learns every profile of a data dir → the vanilla model (stage 0).

Runs on the shared :class:`~icu_unlearn.training.loop.IcuTrainer`, seeded, with tqdm progress, unchanged under
``accelerate launch --num_processes N`` (the configured batch size is the global one; only the main process
writes). With ``stop_at_accuracy`` it trains until it knows the data (:mod:`icu_unlearn.training.knowledge`). The saved
dir holds the weights, the processor and ``finetune.json`` (:class:`icu_tasks.records.layout.FinetuneRecord`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icu_tasks.errors import ConfigError, TrainingError
from icu_tasks.records.files import stamped
from icu_tasks.records.layout import FINETUNE_JSON
from icu_unlearn.methods.config import LM_LORA_TARGETS, check_scheduler, coerce_fields, non_negative, positive
from icu_unlearn.training.distributed import is_main, world_size

#: Vision tower and projector parameters (own learning rate and weight decay in the full fine-tune).
VISION_PARAMS = re.compile(r"(vision_tower|multi_modal_projector|visual|vision_model)\.")


@dataclass
class FinetuneConfig:
    """Fine-tune hyper-parameters (defaults: the tiny-model recipe measured in docs/methods.md).

    Attributes:
        mode: ``full`` (every weight; what a randomly initialised tiny model needs — LoRA cannot memorise on
            it) or ``lora`` (MLLMU-Bench: LoRA r=16, α=16, dropout 0.05 on the language model, merged at the end;
            use it for real pretrained models with e.g. ``learning_rate=2e-5, batch_size=4``).
        learning_rate: AdamW learning rate of the language model (and of the LoRA weights in ``lora`` mode).
        vision_learning_rate: learning rate of the vision tower and projector (``full`` mode).
        vision_weight_decay: their weight decay (without it the projected image features blow up and the
            image view is not learnt).
        weight_decay: weight decay of the language model.
        vqa_repeat: how often each image (VQA) row appears in an epoch: the image view needs about twice the
            epochs of the text view (the portrait is its only cue of who is asked about).
        batch_size: global batch size; max_steps: optimizer steps (what the defaults reach on the demo's
            data, and why the schedule is constant: docs/methods.md, "The vanilla model").
        warmup_steps, max_grad_norm.
        lr_scheduler: a transformers scheduler name (``linear``, ``cosine``, ``constant``…).
        lora_r, lora_alpha, lora_dropout, lora_target_modules: the adapter of ``lora`` mode.
        seed: seeds initialisation, data order and dropout.
        stop_at_accuracy: the stopping rule "train until it knows the data" (0 = off: train ``max_steps``).
            Every ``check_every`` steps each split × view group (forget, retain-train, retain-eval, utility ×
            image, text) is scored by teacher-forced exact match (:mod:`icu_unlearn.training.knowledge`); training stops
            as soon as every group reaches this value. ``max_steps`` is then a cap: reaching it first is an
            error that names the scores, and nothing is saved.
        check_every: optimizer steps between two checks of the stopping rule.
        longform: also train the long-form row of every trained profile ("Summarise the <record> of
            <name>." → one or two sentences stating every private value; ``qa_longform.parquet``), so that
            the ``icu_longform`` tasks score summaries the vanilla model knows. Not part of the stopping rule.
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
    longform: bool = field(
        default=True,
        metadata={
            "help": "also train each profile's long-form summary row (scored by the icu_longform tasks for "
            "fluency and leakage; never part of the stopping rule)."
        },
    )

    def __post_init__(self) -> None:
        coerce_fields(self)  # values from --set / YAML arrive as text (YAML 1.1 reads 1e-3 as a string)
        if not 0.0 <= self.stop_at_accuracy <= 1.0:
            raise ConfigError(f"stop_at_accuracy must be in [0, 1], got {self.stop_at_accuracy}")
        if self.mode not in ("full", "lora"):
            raise ConfigError(f"fine-tune mode must be 'full' or 'lora', got {self.mode!r}")
        positive(
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
        non_negative(self, "vision_weight_decay", "weight_decay", "warmup_steps", "max_grad_norm", "seed")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        check_scheduler(self.lr_scheduler)


def finetune(
    model_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: FinetuneConfig | None = None,
    *,
    overwrite: bool = False,
    device: str | None = None,
    dtype: str = "auto",
) -> Path:
    """Fine-tune ``model_dir`` on every QA row of ``data_dir`` and save the vanilla model to ``out_dir``.

    The result is a full model dir (merged weights as safetensors, the processor, ``finetune.json``), written
    to a temporary sibling and renamed. Returns ``out_dir``. ``dtype``: the precision the model is loaded and
    trained in (:mod:`icu_unlearn.models.precision`; half precision needs ``mode="lora"``).
    """
    from icu_tasks.data.dataset import open_data
    from icu_tasks.records.layout import check_writable
    from icu_unlearn.models.loading import resolve_model_dir
    from icu_unlearn.models.precision import check_training_dtype

    cfg = config or FinetuneConfig()
    check_training_dtype(dtype, device, full_weights=cfg.mode == "full")
    out = Path(out_dir)
    check_writable(out, overwrite)
    data = open_data(data_dir)
    resolve_model_dir(model_dir)  # a typo fails here, before torch and transformers are imported

    from transformers import set_seed

    from icu_unlearn.training.data import Collator, ExampleDataset, finetune_examples
    from icu_unlearn.training.loop import NLLObjective, schedule_args, training_arguments
    from icu_unlearn.training.progress import train_quietly
    from icu_unlearn.training.stage_dir import check_changed, snapshot_trainable, weight_changes

    examples = finetune_examples(data, cfg.vqa_repeat, cfg.longform)
    set_seed(cfg.seed)
    model, processor, optimizer = _finetune_model(model_dir, cfg, device, dtype)
    before = snapshot_trainable(model)
    collator = Collator(processor, split_longform=cfg.longform)
    stopper = _stopper(cfg, data, Collator(processor))
    with tempfile.TemporaryDirectory(prefix="icu-finetune-") as scratch:
        args = training_arguments(
            scratch, **schedule_args(cfg), device=device, find_unused_parameters=cfg.mode == "full",
            model_dtype=model.dtype,
        )  # fmt: skip
        start = time.perf_counter()
        callbacks = [stopper] if stopper else None
        trainer = train_quietly(
            model, NLLObjective(), ExampleDataset(examples), collator, args, optimizer, callbacks=callbacks
        )
        seconds = time.perf_counter() - start
    _check_learned(cfg, stopper)
    changed = check_changed(weight_changes(trainer.model, before), "fine-tune")
    model = trainer.model.merge_and_unload() if cfg.mode == "lora" else trainer.model
    if is_main():
        record = _finetune_record(model_dir, data, cfg, examples, trainer, stopper, seconds, len(changed))
        _save_model_dir(out, model, processor, record, overwrite)
    trainer.accelerator.wait_for_everyone()
    return out


def _finetune_model(model_dir: str | os.PathLike, cfg: FinetuneConfig, device: str | None, dtype: str):
    """The model to fine-tune, its processor and optimizer: a LoRA-wrapped model (optimizer ``None``: the
    Trainer's default) or every weight with two AdamW parameter groups (language model; vision + projector)."""
    import torch

    from icu_unlearn.models import load_base
    from icu_unlearn.models.adapters import lora_model

    model, processor = load_base(model_dir, device=device, dtype=dtype)
    model.train()
    if cfg.mode == "lora":
        model = lora_model(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)
        return model, processor, None
    vision = [p for n, p in model.named_parameters() if VISION_PARAMS.search(n)]
    text = [p for n, p in model.named_parameters() if not VISION_PARAMS.search(n)]
    groups = [{"params": text, "lr": cfg.learning_rate, "weight_decay": cfg.weight_decay}]
    if vision:
        groups.append(
            {"params": vision, "lr": cfg.vision_learning_rate, "weight_decay": cfg.vision_weight_decay}
        )
    return model, processor, torch.optim.AdamW(groups)


def _stopper(cfg: FinetuneConfig, data: Any, collator: Any) -> Any:
    """The stopping-rule callback (:class:`icu_unlearn.training.knowledge.StopWhenKnown`), or ``None`` when off."""
    if cfg.stop_at_accuracy <= 0:
        return None
    from icu_unlearn.training.knowledge import StopWhenKnown, check_groups

    return StopWhenKnown(check_groups(data), collator, cfg.stop_at_accuracy, cfg.check_every)


def _check_learned(cfg: FinetuneConfig, stopper: Any) -> None:
    """The cap was reached before the stopping rule: TrainingError with the last scores (nothing is saved)."""
    if stopper is None or stopper.reached_step is not None:
        return
    from icu_unlearn.training.knowledge import format_scores

    raise TrainingError(
        f"the model did not learn the data: after the cap of {cfg.max_steps} steps teacher-forced exact "
        f"match is {format_scores(stopper.last_scores)}, below the target {cfg.stop_at_accuracy} "
        "(raise --max-steps or lower --stop-at-accuracy); nothing was saved"
    )


def _finetune_record(
    model_dir: str | os.PathLike,
    data: Any,
    cfg: FinetuneConfig,
    examples: list,
    trainer: Any,
    stopper: Any,
    seconds: float,
    changed: int,
) -> dict[str, Any]:
    """The ``finetune.json`` record (:class:`icu_tasks.records.layout.FinetuneRecord`; ``model_id`` is added when
    the weights are saved)."""
    from icu_unlearn.models.precision import dtype_name
    from icu_unlearn.training.stage_dir import versions

    return {
        "base_model": str(Path(model_dir).resolve()),
        "data_dir": str(data.root),
        "data_hash": data.data_hash,
        "config": dataclasses.asdict(cfg),
        "rows": len(set(e.id for e in examples)),
        "examples_per_epoch": len(examples),
        "world_size": world_size(),
        "dtype": dtype_name(trainer.model.dtype),
        "train_seconds": round(seconds, 2),
        "changed_modules": changed,
        "log_history": trainer.history.history,
        "steps": int(trainer.state.global_step),
        "stopping": _stopping_record(cfg, stopper),
        "versions": versions(),
    }


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
    from icu_tasks.records.layout import write_dir_atomically, write_json
    from icu_unlearn.models.identity import MODEL_ID_KEY, compute_model_id

    def fill(tmp: Path) -> None:
        model.eval()
        model.save_pretrained(str(tmp))
        save_processor(processor, record["base_model"], tmp)
        record[MODEL_ID_KEY] = compute_model_id(tmp)  # content identity (config + weights), computed once
        write_json(tmp / FINETUNE_JSON, stamped(FINETUNE_JSON, record))

    write_dir_atomically(out, fill, overwrite=overwrite, required=FINETUNE_JSON)


#: The files of a model dir that are not its weights or model config: tokenizer, processor, chat template.
PROCESSOR_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "processor_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "chat_template.jinja",
    "chat_template.json",
)


def save_processor(processor: Any, source_dir: str | os.PathLike, out_dir: str | os.PathLike) -> None:
    """Save ``processor`` next to a model saved in ``out_dir``. One built without its video part (no
    torchvision, ``icu_unlearn.models.loading._processor_without_video``) cannot save itself: its files are copied from the model dir
    it was loaded from (``source_dir``), which it left unchanged."""
    if getattr(processor, "video_processor", "absent") is not None:
        processor.save_pretrained(str(out_dir))
        return
    for name in PROCESSOR_FILES:
        if (Path(source_dir) / name).is_file():
            shutil.copyfile(Path(source_dir) / name, Path(out_dir) / name)
