"""Registry of unlearning methods: ``register_method``, ``get_method(name)``, ``list_methods()``.

A leaf module (it imports only :mod:`icu_unlearn.methods.base`), so method modules register themselves
with ``from icu_unlearn.methods.registry import register_method`` without importing the half-initialised
``icu_unlearn.methods`` package (the layout PEFT uses). The package re-exports every name defined here.

Names are lower case with underscores; lookups also accept the paper spellings (``"GA-Diff"``, ``"NPO Diff"``,
``"KL-Min"``). An unknown name raises :class:`icu_tasks.errors.ConfigError` naming the closest known one.
"""

from __future__ import annotations

import re

from icu_tasks.errors import ConfigError, did_you_mean
from icu_unlearn.methods.base import UnlearningMethod
from icu_unlearn.methods.config import MethodConfig, TrainingMethodConfig

_REGISTRY: dict[str, type[UnlearningMethod]] = {}
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def canonical_name(name: str) -> str:
    """``"GA-Diff"`` → ``"ga_diff"``: lower case, runs of ``-``/space/``_`` become one underscore."""
    return re.sub(r"[\s\-_]+", "_", str(name).strip().lower())


def register_method(cls: type[UnlearningMethod]) -> type[UnlearningMethod]:
    """Register a method class under ``cls.name`` (usable as a class decorator); names must be unique."""
    if not (isinstance(cls, type) and issubclass(cls, UnlearningMethod)):
        raise TypeError(f"{cls!r} is not an UnlearningMethod subclass")
    if not _NAME_RE.match(cls.name or ""):
        raise ValueError(f"method name {cls.name!r} must match {_NAME_RE.pattern}")
    if not (isinstance(cls.config_class, type) and issubclass(cls.config_class, MethodConfig)):
        raise TypeError(f"{cls.__name__}.config_class must be a MethodConfig subclass")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(
            f"a method called '{cls.name}' is already registered ({_REGISTRY[cls.name].__name__})"
        )
    if cls.trains and not issubclass(cls.config_class, TrainingMethodConfig):
        raise TypeError(f"{cls.__name__} trains, so its config_class must be a TrainingMethodConfig subclass")
    _REGISTRY[cls.name] = cls
    return cls


def get_method(name: str) -> type[UnlearningMethod]:
    """The method class registered as ``name``; unknown → ConfigError with the closest name."""
    key = canonical_name(name)
    if key in _REGISTRY:
        return _REGISTRY[key]
    known = list_methods()
    raise ConfigError(
        f"unknown unlearning method '{name}'{did_you_mean(key, known)} (known: {', '.join(known)})"
    )


def list_methods() -> list[str]:
    """Registered method names, sorted."""
    return sorted(_REGISTRY)


def build_method(name: str, **hyper_parameters: object) -> UnlearningMethod:
    """An instance of method ``name`` with its config built from ``hyper_parameters`` (validated)."""
    cls = get_method(name)
    return cls(cls.config_class.from_dict(hyper_parameters))
