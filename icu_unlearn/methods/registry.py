"""Registry of unlearning methods: ``register_method``, ``get_method(name)``, ``list_methods()``.

A leaf module (it imports only :mod:`icu_unlearn.methods.base`), so method modules register themselves
with ``from icu_unlearn.methods.registry import register_method`` without importing the half-initialised
``icu_unlearn.methods`` package (the layout PEFT uses). The package re-exports every name defined here.

Names are lower case with underscores; lookups also accept the paper spellings (``"GA-Diff"``, ``"NPO Diff"``,
``"KL-Min"``). An unknown name raises :class:`icu_tasks.errors.ConfigError` naming the closest known one.

Methods from outside this package register in one of two ways (the way lmms-eval finds models):

- an entry point in the ``icu_unlearn.methods`` group of an installed distribution, naming a module (importing
  it runs its ``@register_method``) or an :class:`UnlearningMethod` subclass, e.g. in its ``pyproject.toml``::

      [project.entry-points."icu_unlearn.methods"]
      simnpo = "icu_custom_method.simnpo:SimNPO"

  Entry points are loaded once, the first time a method is looked up or listed; a plugin that fails to import
  is one ``ConfigError`` naming it.
- a ``module:Class`` path given where a method name is expected (``--method mypkg.methods:MyMethod``): the
  module is imported and the class registered under its ``name``.
"""

from __future__ import annotations

import importlib
import re

from icu_tasks.errors import ConfigError, did_you_mean
from icu_unlearn.methods.base import UnlearningMethod
from icu_unlearn.methods.config import MethodConfig, TrainingMethodConfig

#: Entry-point group through which other distributions add methods.
ENTRY_POINT_GROUP = "icu_unlearn.methods"

_REGISTRY: dict[str, type[UnlearningMethod]] = {}
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_PATH_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_plugins_loaded = False


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


def load_plugins() -> None:
    """Register the methods installed distributions declare under :data:`ENTRY_POINT_GROUP` (once)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if isinstance(obj, type):
                register_method(obj)
        except Exception as err:  # a third party's import error, or a class the registry refuses
            raise ConfigError(
                f"unlearning method plugin '{ep.name}' ({ep.value}) cannot be loaded: {type(err).__name__}: {err}"
            ) from None


def _from_path(spec: str) -> type[UnlearningMethod]:
    """Import ``module:Class`` and register the class (it must be an :class:`UnlearningMethod` subclass)."""
    module_name, _, attr = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"method path '{spec}' cannot be imported: {type(err).__name__}: {err}") from None
    try:
        return register_method(cls)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"method path '{spec}': {err}") from None


def get_method(name: str) -> type[UnlearningMethod]:
    """The method class registered as ``name`` (or imported from a ``module:Class`` path); unknown →
    ConfigError with the closest name."""
    if _PATH_RE.match(str(name)):
        return _from_path(str(name))
    load_plugins()
    key = canonical_name(name)
    if key in _REGISTRY:
        return _REGISTRY[key]
    known = list_methods()
    raise ConfigError(
        f"unknown unlearning method '{name}'{did_you_mean(key, known)} (known: {', '.join(known)})"
    )


def list_methods() -> list[str]:
    """Registered method names (built-in and plugins), sorted."""
    load_plugins()
    return sorted(_REGISTRY)


def build_method(name: str, **hyper_parameters: object) -> UnlearningMethod:
    """An instance of method ``name`` with its config built from ``hyper_parameters`` (validated)."""
    cls = get_method(name)
    return cls(cls.config_class.from_dict(hyper_parameters))
