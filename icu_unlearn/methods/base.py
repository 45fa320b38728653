"""What every unlearning method shares: the method (hook object) protocol and the forget/retain loss split.

A method is a small class with a dataclass config (:mod:`icu_unlearn.methods.config`), registered once by name
(see :mod:`icu_unlearn.methods`). It never builds data loaders or optimizers: the one shared training loop
(:mod:`icu_unlearn.training.loop` — a transformers ``Trainer`` whose loss and optimizer-step hooks delegate to the
method) calls it. The hooks, in the order a stage calls them:

``attach_adapter(model, data, parent_dir)``
    the model the stage works on: the parent stage's adapter continued, or a fresh LoRA adapter at stage 1
    (MMUnlearner attaches a sparse adapter over its salient weights instead);
``prepare(model, data)``
    once before training, on every process;
``compute_loss(model, batch, ctx)``
    every micro-batch: ``batch = {"forget": inputs, "retain": inputs | None}`` (model inputs with answer-only
    ``labels``), ``ctx`` a :class:`StepContext`; returns the scalar loss that is minimised. The default is
    :meth:`UnlearningMethod.forget_loss`; :class:`RetainMethod` adds :meth:`RetainMethod.retain_loss`, so a
    method is composed as in OpenUnlearning (``NPO(GradDiff)``): it says what it does on the forget batch and,
    if it has a retain term, what it does on the retain batch;
``before_optimizer_step(model, ctx)``
    after gradient clipping (and the data-parallel gradient average), before ``optimizer.step()``; ``model`` is
    the unwrapped model (MMUnlearner multiplies forget gradients by its mask);
``output_masks(model, data, parent)``
    training-free methods (``trains = False``, MANU) return new inference-time output-channel masks;
``artifacts()`` / ``stage_info()``
    extra tensors to save in the stage dir for inspection (file name → {key: tensor}) / facts for stage.json.

Module top levels import no torch/transformers, so the registry (and the CLI flags built from the configs)
stays cheap; the heavy imports happen inside the hooks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from icu_tasks.errors import ConfigError
from icu_unlearn.methods.config import MethodConfig, RetainConfig

if TYPE_CHECKING:
    import torch


class TrainingExample(Protocol):
    """What a method may read of one training example (the training layer's rows satisfy it)."""

    id: str
    view: str
    split: str
    forget_task: int
    field: str


class StageRows(Protocol):
    """What a stage gives a method: its forget rows, the retain-train rows and a way to batch them.

    Attributes:
        forget: the forget task(s) of this stage, both views.
        retain: retain-train, both views (what a retain term may train on).
        task_ids: the forget task ids of this stage.
        data_hash: the data dir's content hash.
    """

    forget: Sequence[TrainingExample]
    retain: Sequence[TrainingExample]
    task_ids: list[int]
    data_hash: str

    def collate(self, examples: Sequence[TrainingExample]) -> dict[str, Any]:
        """Examples → model inputs with answer-only ``labels`` (for a method's own passes: Fisher, MANU)."""
        ...


@dataclass
class StepContext:
    """What the training loop tells a method at each step.

    Attributes:
        step: the optimizer step being computed (0-based; all micro-batches of one step share it).
        reference_logits: ``f(inputs) -> logits`` of the frozen reference model, the vanilla model M_0 (the
            stage's adapter disabled; stage masks still apply), computed without gradient.
    """

    step: int
    reference_logits: Callable[[dict[str, Any]], torch.Tensor] = field(repr=False)


class UnlearningMethod:
    """Base class of all methods (see the module docstring for the hook protocol).

    Class attributes a method sets:
        name: registry name (lower case, ``[a-z0-9_]``).
        config_class: its :class:`MethodConfig` subclass (a :class:`TrainingMethodConfig` when it trains).
        uses_retain: whether batches carry retain-train examples (the loader skips them otherwise).
        trains: False for training-free methods (no optimizer steps; :meth:`output_masks` does the work).
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    uses_retain: ClassVar[bool] = False
    trains: ClassVar[bool] = True

    def __init__(self, config: MethodConfig | None = None) -> None:
        config = config if config is not None else self.config_class()
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"method '{self.name}' needs a {self.config_class.__name__}, got {type(config).__name__}"
            )
        self.config = config

    def attach_adapter(self, model: Any, data: StageRows, parent_dir: str | os.PathLike | None) -> Any:
        """The stage's model: ``parent_dir``'s adapter continued (trainable when the method trains) or, at
        stage 1, a fresh LoRA adapter from the config's ``lora_*`` fields."""
        from icu_unlearn.models.adapters import continue_stage, lora_model

        if parent_dir is not None:
            return continue_stage(model, parent_dir, trainable=self.trains)
        cfg = self.config
        return lora_model(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)

    def prepare(self, model: torch.nn.Module, data: StageRows) -> None:
        """Called once before training on every process; default: nothing."""

    def forget_loss(self, model: torch.nn.Module, forget: dict[str, Any], ctx: StepContext) -> torch.Tensor:
        """The term minimised on the forget batch (model inputs with answer-only ``labels``)."""
        raise NotImplementedError(f"method '{self.name}' does not train")

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, Any], ctx: StepContext) -> torch.Tensor:
        """The loss minimised on one micro-batch; default: :meth:`forget_loss` of the forget batch."""
        return self.forget_loss(model, batch["forget"], ctx)

    def before_optimizer_step(self, model: torch.nn.Module, ctx: StepContext) -> None:
        """Called after clipping, before the optimizer step; default: nothing."""

    def output_masks(
        self, model: torch.nn.Module, data: StageRows, parent: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Training-free methods: the stage's cumulative output-channel masks; default: the parent's.

        A method that must prune something new checks it here (:func:`icu_unlearn.models.masks.check_new_masks`).
        """
        return dict(parent)

    def artifacts(self) -> dict[str, dict[str, torch.Tensor]]:
        """Extra safetensors files for the stage dir (file name → tensors), e.g. a saliency mask."""
        return {}

    def stage_info(self) -> dict[str, Any]:
        """Method-specific facts recorded in stage.json (e.g. the salient fraction); default: none."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


class RetainMethod(UnlearningMethod):
    """A method with a retain term (OpenUnlearning's ``GradDiff`` shape): ``forget_loss + retain_loss``.

    The retain batch comes from retain-train, never retain-eval. :meth:`retain_loss` is ``λ·L_NLL(retain)``;
    a subclass changes either term (NPO-Diff its forget term, KL-Min its retain term).
    """

    config_class: ClassVar[type[MethodConfig]] = RetainConfig
    uses_retain: ClassVar[bool] = True

    def retain_loss(
        self, model: torch.nn.Module, retain: dict[str, Any], ctx: StepContext
    ) -> torch.Tensor | None:
        """``λ·L_NLL(retain)``; ``None`` when λ = 0 (no forward pass is spent on the retain batch)."""
        from icu_unlearn.methods import losses

        weight = self.config.retain_weight
        if not weight:
            return None
        return weight * losses.nll_loss(forward_logits(model, retain), retain["labels"])

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, Any], ctx: StepContext) -> torch.Tensor:
        """``forget_loss(forget) + retain_loss(retain)`` (the retain term skipped when it is ``None``)."""
        loss = self.forget_loss(model, batch["forget"], ctx)
        retain = batch.get("retain")
        extra = self.retain_loss(model, retain, ctx) if retain is not None else None
        return loss if extra is None else loss + extra


def forward_logits(model: torch.nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
    """Logits of ``model`` on model inputs (``labels`` are not passed: losses are computed by us)."""
    return model(**{k: v for k, v in inputs.items() if k != "labels"}).logits
