"""What every unlearning method shares: the base config dataclass and the method (hook object) protocol.

A method is a small class with a dataclass config, registered once by name (see
:mod:`icu_unlearn.methods`). It never builds models, data loaders or optimizers: the one shared training loop
(:mod:`icu_unlearn.trainer` — a transformers ``Trainer`` whose loss and optimizer-step hooks delegate to the
method) calls it. The hooks, in the order the loop calls them:

``prepare(model, data)``
    once before training, on every process (e.g. MMUnlearner's Fisher saliency mask);
``compute_loss(model, batch, ctx)``
    every micro-batch: ``batch = {"forget": inputs, "retain": inputs | None}`` (model inputs with answer-only
    ``labels``), ``ctx`` a :class:`StepContext`; returns the scalar loss that is minimised;
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

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from icu_tasks.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    import torch

    from icu_unlearn.training_data import StageData

#: Learning-rate schedules offered (transformers ``SchedulerType`` names that need no extra arguments).
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup", "polynomial", "inverse_sqrt")
#: LoRA targets: every attention/MLP projection of the *language model* only (CLIP towers have q/k/v_proj too).
LM_LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"


@dataclass
class MethodConfig:
    """Hyper-parameters every method has: the optimisation of one stage and the LoRA adapter it trains.

    Defaults are for the tiny model on 2 CPU cores (calibrated defaults are documented in the README); the
    MLLMU-Bench recipe for 7B models is lr 1e-5…2e-5, batch 4, one epoch over the task, LoRA r=16, α=16,
    dropout 0.05.

    Attributes:
        learning_rate: AdamW learning rate of the LoRA parameters (> 0).
        max_steps: optimizer steps in the stage (≥ 1); the forget set is cycled as often as needed.
        batch_size: forget (and retain) examples per device per micro-batch (≥ 1).
        gradient_accumulation_steps: micro-batches per optimizer step (≥ 1).
        max_grad_norm: gradient clipping norm (0 disables clipping).
        weight_decay: AdamW weight decay (≥ 0).
        warmup_steps: linear warm-up steps (≥ 0) before the schedule.
        lr_scheduler: the learning-rate schedule after warm-up, a transformers scheduler name: ``linear``
            (decay to 0 at ``max_steps``), ``cosine``, ``constant``, ``constant_with_warmup``…
        lora_r: LoRA rank of a fresh stage-1 adapter (≥ 1); later stages continue the parent's adapter.
        lora_alpha: LoRA scaling α (> 0).
        lora_dropout: LoRA dropout in [0, 1).
        lora_target_modules: regex of the base model's module names that get LoRA (language model only).
        seed: seed of initialisation, sampling and data order.
    """

    learning_rate: float = field(
        default=2e-4, metadata={"help": "AdamW learning rate of the LoRA parameters (> 0).", "training": True}
    )
    max_steps: int = field(
        default=50,
        metadata={
            "help": "optimizer steps in the stage (>= 1); the forget set is cycled as often as needed.",
            "training": True,
        },
    )
    batch_size: int = field(
        default=8,
        metadata={
            "help": "forget (and retain) examples per device per micro-batch (>= 1).",
            "training": True,
        },
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "micro-batches per optimizer step (>= 1).", "training": True}
    )
    max_grad_norm: float = field(
        default=1.0, metadata={"help": "gradient clipping norm (0 disables clipping).", "training": True}
    )
    weight_decay: float = field(
        default=0.0, metadata={"help": "AdamW weight decay (>= 0).", "training": True}
    )
    warmup_steps: int = field(
        default=0, metadata={"help": "linear warm-up steps (>= 0) before the schedule.", "training": True}
    )
    lr_scheduler: str = field(
        default="linear",
        metadata={
            "help": "learning-rate schedule after warm-up, a transformers scheduler name (linear, cosine, constant...).",
            "training": True,
        },
    )
    lora_r: int = field(
        default=16,
        metadata={
            "help": "LoRA rank of a fresh stage-1 adapter (>= 1); later stages continue the parent's adapter."
        },
    )
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA scaling alpha (> 0)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout in [0, 1)."})
    lora_target_modules: str = field(
        default=LM_LORA_TARGETS,
        metadata={"help": "regex of the base model's module names that get LoRA (language model only)."},
    )
    seed: int = field(default=0, metadata={"help": "seed of initialisation, sampling and data order."})

    def __post_init__(self) -> None:
        _coerce_fields(self)
        _positive(self, "learning_rate", "max_steps", "batch_size", "gradient_accumulation_steps", "lora_r")
        _positive(self, "lora_alpha")
        _non_negative(self, "max_grad_norm", "weight_decay", "warmup_steps", "seed")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        check_scheduler(self.lr_scheduler)
        try:
            re.compile(self.lora_target_modules)
        except re.error as err:
            raise ConfigError(f"lora_target_modules is not a valid regex: {err}") from None

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MethodConfig:
        """Build from a plain dict (e.g. CLI flags or stage.json); unknown keys → ConfigError with a hint."""
        names = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in names:
                raise ConfigError(f"{cls.__name__} has no hyper-parameter '{key}'{did_you_mean(key, names)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """All fields as JSON-serialisable values (recorded in stage.json)."""
        return dataclasses.asdict(self)


@dataclass
class RetainConfig(MethodConfig):
    """A method with a retain term: ``retain_weight`` (λ ≥ 0) scales L_NLL on retain-train."""

    retain_weight: float = field(
        default=1.0, metadata={"help": "weight lambda (>= 0) of the NLL term on retain-train."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        _non_negative(self, "retain_weight")


def new_default(config: type, name: str, default: Any) -> Any:
    """A subclass's own ``default`` for the field ``name`` it inherits from ``config``, keeping its help."""
    return field(default=default, metadata=config.__dataclass_fields__[name].metadata)


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
        config_class: its :class:`MethodConfig` subclass.
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

    def prepare(self, model: torch.nn.Module, data: StageData) -> None:
        """Called once before training on every process; default: nothing."""

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, Any], ctx: StepContext) -> torch.Tensor:
        """The loss minimised on one micro-batch."""
        raise NotImplementedError(f"method '{self.name}' does not train")

    def before_optimizer_step(self, model: torch.nn.Module, ctx: StepContext) -> None:
        """Called after clipping, before the optimizer step; default: nothing."""

    def output_masks(
        self, model: torch.nn.Module, data: StageData, parent: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Training-free methods: the stage's cumulative output-channel masks; default: the parent's.

        A method that must prune something new checks it here (:func:`icu_unlearn.stage.check_new_masks`).
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


def forward_logits(model: torch.nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
    """Logits of ``model`` on model inputs (``labels`` are not passed: losses are computed by us)."""
    return model(**{k: v for k, v in inputs.items() if k != "labels"}).logits


def retain_nll(
    model: torch.nn.Module, batch: dict[str, Any], weight: float, logits: torch.Tensor | None = None
) -> torch.Tensor | float:
    """The retain term ``weight · L_NLL(retain)`` of GA-Diff, KL-Min, NPO-Diff and MMUnlearner.

    ``batch["retain"]`` holds the retain-train inputs (never retain-eval); ``logits`` are the model's logits
    on them when the caller already has them (KL-Min reuses them for its KL term), else they are computed
    here. Returns ``0.0`` when the batch has no retain inputs. A zero ``weight`` is not skipped here: GA-Diff,
    KL-Min and NPO-Diff skip the call (no forward pass); MMUnlearner's retain step returns the zero term.
    """
    from icu_unlearn import losses

    retain = batch.get("retain")
    if retain is None:
        return 0.0
    if logits is None:
        logits = forward_logits(model, retain)
    return weight * losses.nll_loss(logits, retain["labels"])


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _coerce(name: str, value: Any, default: Any) -> Any:
    """``value`` as the type of the field's ``default``; ConfigError naming the field when it is not one.

    Values from the command line and YAML arrive as text or as the other number type: PyYAML reads ``1e-3``
    as the *string* ``"1e-3"`` (YAML 1.1 floats need a dot), and ``--set max_steps=1e2`` is a float.
    """
    kind = type(default)
    if kind not in (bool, int, float, str):
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
    elif kind is str:
        if isinstance(value, str):
            return value
    elif not isinstance(value, bool) and isinstance(value, (int, float, str)):
        try:
            number = float(value) if isinstance(value, str) else value
        except ValueError:
            number = None
        if kind is float and number is not None:
            return float(number)
        if kind is int and number is not None and float(number).is_integer():
            return int(number)
    raise ConfigError(f"{name} must be {'an' if kind is int else 'a'} {kind.__name__}, got {value!r}")


def _coerce_fields(cfg: Any) -> None:
    """Convert every field with a plain-typed default (bool, int, float, str) to that type, in place."""
    for f in dataclasses.fields(cfg):
        if f.default is not dataclasses.MISSING:
            setattr(cfg, f.name, _coerce(f.name, getattr(cfg, f.name), f.default))


def check_scheduler(name: str) -> None:
    """ConfigError unless ``name`` is one of :data:`SCHEDULERS`."""
    if name not in SCHEDULERS:
        raise ConfigError(f"unknown lr_scheduler {name!r}; choose from {', '.join(SCHEDULERS)}")


def _positive(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not value > 0:
            raise ConfigError(f"{name} must be > 0, got {value}")


def _non_negative(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not value >= 0:
            raise ConfigError(f"{name} must be >= 0, got {value}")
