"""The method config hierarchy: what every method has, what trained methods add, what a retain term adds.

* :class:`MethodConfig` — every method: ``seed``; building from a dict (CLI flags, YAML, stage.json) with one
  clear error for an unknown or inapplicable key; ``to_dict`` for stage.json.
* :class:`TrainingMethodConfig` — methods that train (GA, GA-Diff, KL-Min, NPO, NPO-Diff, MMUnlearner): the
  optimisation of one stage (learning rate and its schedule, steps, batch sizes, clipping) and the adapter it
  trains (LoRA rank, α, dropout, target modules).
* :class:`RetainConfig` — methods with a retain term: its weight λ and the retain batch size.

A training-free method (MANU) derives from :class:`MethodConfig` directly, so its ``--help`` lists only its own
settings and a training flag is refused. A config that inherits a field it does not use lists it in
``unused_fields`` (e.g. MMUnlearner's sparse adapter has no LoRA α): such a field is hidden from the CLI,
refused by :meth:`MethodConfig.from_dict` and left out of :meth:`MethodConfig.to_dict`.

Every field carries ``metadata={"help": ...}`` (the CLI help is generated from it) and is checked in
``__post_init__``; values arriving as text (CLI, YAML 1.1's ``1e-3``) are converted to the field's type.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from icu_tasks.errors import ConfigError, did_you_mean

#: Learning-rate schedules offered (transformers ``SchedulerType`` names that need no extra arguments).
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup", "polynomial", "inverse_sqrt")
#: LoRA targets: every attention/MLP projection of the *language model* only (CLIP towers have q/k/v_proj too).
LM_LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"


@dataclass
class MethodConfig:
    """What every method has: the seed, and the dict round trip of its config."""

    #: Inherited fields this config does not use (hidden from the CLI, refused, not recorded).
    unused_fields: ClassVar[tuple[str, ...]] = ()

    seed: int = field(default=0, metadata={"help": "seed of initialisation, sampling and data order."})

    def __post_init__(self) -> None:
        coerce_fields(self)
        non_negative(self, "seed")

    @classmethod
    def fields(cls) -> list[dataclasses.Field]:
        """The fields this config uses (every dataclass field except ``unused_fields``)."""
        return [f for f in dataclasses.fields(cls) if f.name not in cls.unused_fields]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MethodConfig:
        """Build from a plain dict (e.g. CLI flags or stage.json); unknown keys → ConfigError with a hint."""
        names = {f.name for f in cls.fields()}
        for key in values:
            if key in cls.unused_fields:
                raise ConfigError(
                    f"{cls.__name__} does not use '{key}' (its settings: {', '.join(sorted(names))})"
                )
            if key not in names and key in _TRAINING_FIELDS and not issubclass(cls, TrainingMethodConfig):
                raise ConfigError(
                    f"{cls.__name__} has no hyper-parameter '{key}': the method is training-free "
                    f"(its settings: {', '.join(sorted(names))})"
                )
            if key not in names:
                raise ConfigError(f"{cls.__name__} has no hyper-parameter '{key}'{did_you_mean(key, names)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The used fields as JSON-serialisable values (recorded in stage.json)."""
        return {f.name: dataclasses.asdict(self)[f.name] for f in self.fields()}


@dataclass
class TrainingMethodConfig(MethodConfig):
    """What a method that trains has: the optimisation of one stage and the adapter it trains.

    Batch sizes are global (split over the processes of a data-parallel run) and count examples per
    micro-batch; ``gradient_accumulation_steps`` micro-batches make one optimizer step. The forget set is walked
    through in a seeded random order, reshuffled after each pass; ``batch_size = 0`` puts the whole forget task
    (both views) in every micro-batch. Each method's defaults (a constant learning rate, its rate and step
    budget) come from the calibration protocol in docs/calibration.md. The MLLMU-Bench recipe for 7B models is lr 1e-5…2e-5, batch 4, one epoch
    over the task, LoRA r=16, α=16, dropout 0.05.
    """

    learning_rate: float = field(default=2e-4, metadata={"help": "AdamW learning rate of the adapter (> 0)."})
    max_steps: int = field(
        default=50,
        metadata={"help": "optimizer steps in the stage (>= 1); the forget set is cycled as needed."},
    )
    batch_size: int = field(
        default=8,
        metadata={
            "help": "forget examples per micro-batch, global over processes (>= 0); 0 (or more than the task "
            "has) = the whole forget task, every row of both views, in every micro-batch."
        },
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "micro-batches per optimizer step (>= 1)."}
    )
    max_grad_norm: float = field(
        default=1.0, metadata={"help": "gradient clipping norm (0 disables clipping)."}
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (>= 0)."})
    lr_scheduler: str = field(
        default="constant",
        metadata={
            "help": "learning-rate schedule after the warm-up: linear (decays to 0 at max_steps), cosine, "
            "constant (no warm-up), constant_with_warmup, polynomial, inverse_sqrt."
        },
    )
    warmup_steps: int = field(
        default=0, metadata={"help": "steps of linear warm-up from 0 to learning_rate (>= 0, < max_steps)."}
    )
    lora_r: int = field(
        default=16,
        metadata={
            "help": "LoRA rank of a fresh stage-1 adapter (>= 1); later stages continue the parent's adapter."
        },
    )
    lora_alpha: float = field(
        default=16.0, metadata={"help": "LoRA scaling alpha (> 0): the update is scaled by alpha / r."}
    )
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout in [0, 1)."})
    lora_target_modules: str = field(
        default=LM_LORA_TARGETS,
        metadata={
            "help": "regex of the base model's module names that get the adapter (language model only)."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        positive(self, "learning_rate", "max_steps", "gradient_accumulation_steps", "lora_r", "lora_alpha")
        non_negative(self, "batch_size", "max_grad_norm", "weight_decay", "warmup_steps")
        if self.warmup_steps >= self.max_steps and self.warmup_steps:
            raise ConfigError(f"warmup_steps ({self.warmup_steps}) must be < max_steps ({self.max_steps})")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        check_scheduler(self.lr_scheduler)
        if self.lr_scheduler == "constant" and self.warmup_steps:
            raise ConfigError(
                "lr_scheduler 'constant' has no warm-up (warmup_steps is ignored); use constant_with_warmup"
            )
        try:
            re.compile(self.lora_target_modules)
        except re.error as err:
            raise ConfigError(f"lora_target_modules is not a valid regex: {err}") from None


@dataclass
class RetainConfig(TrainingMethodConfig):
    """A method with a retain term: its weight λ on L_NLL(retain-train) and the retain batch size."""

    retain_weight: float = field(
        default=1.0, metadata={"help": "weight lambda (>= 0) of the NLL term on retain-train."}
    )
    retain_batch_size: int = field(
        default=0,
        metadata={
            "help": "retain-train examples per micro-batch, global (>= 0); 0 = as many as forget examples."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        non_negative(self, "retain_weight", "retain_batch_size")


#: The settings only a training method has (a training-free method refusing one says why).
_TRAINING_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainingMethodConfig)) - {"seed"}


def new_default(config: type, name: str, default: Any) -> Any:
    """A subclass's own ``default`` for the field ``name`` it inherits from ``config``, keeping its help."""
    return field(default=default, metadata=config.__dataclass_fields__[name].metadata)


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _coerce(name: str, value: Any, kind: type) -> Any:
    """``value`` as ``kind`` (bool, int, float or str); ConfigError naming the field when it is not one.

    Values from the command line and YAML arrive as text or as the other number type: PyYAML reads ``1e-3``
    as the *string* ``"1e-3"`` (YAML 1.1 floats need a dot), and ``--set max_steps=1e2`` is a float.
    """
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
    elif kind is str:
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
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


_PLAIN = (bool, int, float, str)


@functools.cache
def _plain_fields(cls: type) -> tuple[tuple[str, type, bool], ...]:
    """``(name, kind, optional)`` of each field of ``cls`` that holds a bool, int, float or str (``optional``:
    None is allowed too), read from its annotation, else from its default's type."""
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):  # an annotation that cannot be resolved here: fall back to the defaults
        hints = {}
    out = []
    for f in dataclasses.fields(cls):
        hint = hints.get(f.name)
        args = typing.get_args(hint)
        kinds = [a for a in args if a is not type(None)]
        optional = type(None) in args
        if hint in _PLAIN:
            kind = hint
        elif optional and len(kinds) == 1 and kinds[0] in _PLAIN:
            kind = kinds[0]
        elif not args and type(f.default) in _PLAIN:
            kind = type(f.default)
        else:
            continue
        out.append((f.name, kind, optional))
    return tuple(out)


def coerce_fields(cfg: Any) -> None:
    """Convert every bool, int, float or str field of the dataclass ``cfg`` (``X | None`` ones too) to its
    type, in place; ConfigError naming the first field whose value is not one."""
    for name, kind, optional in _plain_fields(type(cfg)):
        value = getattr(cfg, name)
        if value is None and optional:
            continue
        setattr(cfg, name, _coerce(name, value, kind))


def check_scheduler(name: str) -> None:
    """ConfigError unless ``name`` is one of :data:`SCHEDULERS`."""
    if name not in SCHEDULERS:
        raise ConfigError(f"unknown lr_scheduler {name!r}; choose from {', '.join(SCHEDULERS)}")


def positive(cfg: Any, *names: str) -> None:
    """ConfigError naming the first of ``names`` whose value is not > 0."""
    for name in names:
        value = getattr(cfg, name)
        if not value > 0:
            raise ConfigError(f"{name} must be > 0, got {value}")


def non_negative(cfg: Any, *names: str) -> None:
    """ConfigError naming the first of ``names`` whose value is not >= 0."""
    for name in names:
        value = getattr(cfg, name)
        if not value >= 0:
            raise ConfigError(f"{name} must be >= 0, got {value}")
