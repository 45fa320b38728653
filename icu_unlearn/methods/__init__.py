"""Unlearning methods: the registry, the method interface and the seven built-in methods.

What lives here: :mod:`~icu_unlearn.methods.config` (``MethodConfig`` → ``TrainingMethodConfig`` →
``RetainConfig``: every field with its help and checks), :mod:`~icu_unlearn.methods.base` (the hook protocol
``UnlearningMethod``, ``RetainMethod`` = forget term + retain term, ``StepContext``),
:mod:`~icu_unlearn.methods.registry` (``register_method``, ``get_method``, ``list_methods``, ``build_method``,
``canonical_name``, re-exported here), :mod:`~icu_unlearn.methods.saliency` (MMUnlearner's weight-level Fisher
and sparse SHiRA adapter) and one module per method (GA, GA-Diff, KL-Min, NPO, NPO-Diff, MMUnlearner, MANU).
Methods compose as in OpenUnlearning: GA-Diff = GA's forget term + the retain term, NPO-Diff = NPO's forget
term on GA-Diff, KL-Min = GA-Diff with a KL anchor in its retain term. A method knows nothing of the pipeline:
it gets a model, batches and a :class:`StepContext`, and returns a loss.

Names are lower case with underscores; lookups also accept the paper spellings (``"GA-Diff"``, ``"NPO Diff"``,
``"KL-Min"``). An unknown name raises :class:`icu_tasks.errors.ConfigError` naming the closest known one.
Importing this package registers the seven built-in methods and imports no torch.
"""

from __future__ import annotations

# The built-in methods register themselves on import (one module per method).
from icu_unlearn.methods import ga, ga_diff, kl_min, manu, mmunlearner, npo, npo_diff  # noqa: F401
from icu_unlearn.methods.base import RetainMethod, StepContext, UnlearningMethod
from icu_unlearn.methods.config import MethodConfig, RetainConfig, TrainingMethodConfig
from icu_unlearn.methods.registry import (
    build_method,
    canonical_name,
    get_method,
    list_methods,
    register_method,
)

__all__ = [
    "MethodConfig",
    "RetainConfig",
    "RetainMethod",
    "StepContext",
    "TrainingMethodConfig",
    "UnlearningMethod",
    "build_method",
    "canonical_name",
    "get_method",
    "list_methods",
    "register_method",
]
