"""The one shared training loop: a transformers ``Trainer`` whose loss and optimizer-step hooks belong to a method.

The fine-tune and every unlearning method run on :class:`IcuTrainer`. The Trainer owns everything generic —
devices, data-parallel (``accelerate launch``), gradient accumulation, clipping, AdamW + schedule, seeding,
the tqdm progress bar, logging — and delegates exactly two things to an *objective* (an
:class:`~icu_unlearn.methods.base.UnlearningMethod` or the fine-tune's :class:`NLLObjective`):

* ``compute_loss(model, batch, ctx)`` for every micro-batch (``ctx``: the optimizer step and the reference
  model), through :meth:`IcuTrainer.compute_loss`;
* ``before_optimizer_step(model, ctx)`` after clipping, through :class:`MethodCallback`, a ``TrainerCallback``
  on ``on_pre_optimizer_step``.

:class:`LossHistoryCallback` keeps the logged losses for ``stage.json``.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from icu_tasks.errors import ConfigError
from icu_unlearn.methods import losses
from icu_unlearn.methods.base import StepContext, forward_logits
from icu_unlearn.models.loading import resolve_device
from icu_unlearn.models.precision import trainer_precision
from icu_unlearn.training.distributed import per_device_batch


class NLLObjective:
    """The fine-tune's objective: answer-only mean token cross-entropy (L_NLL) on plain batches."""

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, Any], ctx: StepContext) -> torch.Tensor:

        if "parts" in batch:  # a batch padded in parts (Collator.encode_parts): the same token mean
            return losses.nll_loss_parts([(forward_logits(model, p), p["labels"]) for p in batch["parts"]])
        return losses.nll_loss(forward_logits(model, batch), batch["labels"])

    def before_optimizer_step(self, model: torch.nn.Module, ctx: StepContext) -> None:
        """Nothing: plain descent."""


class MethodCallback(TrainerCallback):
    """Calls the objective's ``before_optimizer_step`` at the Trainer's ``on_pre_optimizer_step`` event."""

    def __init__(self, trainer: IcuTrainer) -> None:
        self.trainer = trainer

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.trainer.objective.before_optimizer_step(self.trainer.model, self.trainer.step_context())


class LossHistoryCallback(TrainerCallback):
    """Collects the Trainer's log entries (loss, learning rate, grad norm) per logging step."""

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        numbers = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, (int, float))}
        if numbers:
            self.history.append({"step": state.global_step, **numbers})


class IcuTrainer(Trainer):
    """``Trainer`` whose loss is ``objective.compute_loss`` (the method's), computed from logits by
    :mod:`icu_unlearn.methods.losses` (the model's own loss is never used)."""

    loss_is_scaled_for_ga = False  # our losses are per-micro-batch means; the Trainer divides by accumulation

    def __init__(self, *args: Any, objective: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False
        self.objective = objective
        self.history = LossHistoryCallback()
        self.add_callback(MethodCallback(self))
        self.add_callback(self.history)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = self.objective.compute_loss(model, inputs, self.step_context())
        return (loss, None) if return_outputs else loss

    def step_context(self) -> StepContext:
        return StepContext(step=self.state.global_step, reference_logits=self.reference_logits)

    def reference_logits(self, inputs: dict[str, Any]) -> torch.Tensor:
        """Logits of the vanilla model M_0: the same weights with the PEFT adapter disabled, no gradient."""
        model = self.model  # the unwrapped model (a PeftModel during unlearning)
        disable = getattr(model, "disable_adapter", None)
        if disable is None:
            raise ConfigError("this method needs a reference model, which needs a PEFT adapter to switch off")
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), disable():
                return forward_logits(model, inputs).detach()
        finally:
            model.train(was_training)


def training_arguments(
    out_dir: str,
    *,
    max_steps: int,
    batch_size: int,
    learning_rate: float,
    weight_decay: float = 0.0,
    max_grad_norm: float = 1.0,
    warmup_steps: int = 0,
    gradient_accumulation_steps: int = 1,
    lr_scheduler_type: str = "linear",
    seed: int = 0,
    device: str | None = None,
    find_unused_parameters: bool = False,
    train_sampling_strategy: str = "random",
    model_dtype: Any = None,
) -> TrainingArguments:
    """The TrainingArguments every ICU-Bench training run uses (no checkpoints, no reporting, tqdm on).

    ``find_unused_parameters``: set for the full fine-tune, where a text-only batch leaves the vision tower
    without gradient (DDP would fail); LoRA stages use every adapter weight in every step.
    ``train_sampling_strategy``: ``random`` (the fine-tune's shuffled examples) or ``sequential`` (an unlearning
    stage's :class:`~icu_unlearn.training.data.StepBatches`, which are shuffled already).
    ``model_dtype``: the dtype of the model's weights; a half-precision model trains under the Trainer's mixed
    precision (:func:`icu_unlearn.models.precision.trainer_precision`).
    """
    on = resolve_device(device)  # auto/None -> cpu or cuda: the Trainer's mixed precision must know which

    return TrainingArguments(
        output_dir=out_dir,
        max_steps=max_steps,
        per_device_train_batch_size=per_device_batch(batch_size),
        gradient_accumulation_steps=gradient_accumulation_steps,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        max_grad_norm=max_grad_norm,
        warmup_steps=warmup_steps,
        lr_scheduler_type=lr_scheduler_type,
        seed=seed,
        data_seed=seed,
        logging_steps=max(1, max_steps // 10),
        save_strategy="no",
        report_to="none",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        disable_tqdm=False,
        use_cpu=(on == "cpu"),
        ddp_find_unused_parameters=find_unused_parameters,
        train_sampling_strategy=train_sampling_strategy,
        **trainer_precision(model_dtype, on),
    )


def schedule_args(cfg: Any) -> dict[str, Any]:
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
