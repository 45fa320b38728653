"""GA-Diff — gradient ascent on forget plus descent on retain: ``−L_NLL(f) + λ·L_NLL(r)``.

Both terms in one optimizer step (OpenUnlearning's "GradDiff"; MLLMU-Bench alternates a forget and a retain
pass, which is the same update to first order): GA's forget term composed with the retain term of
:class:`~icu_unlearn.methods.base.RetainMethod`.
"""

from __future__ import annotations

from dataclasses import dataclass

from icu_unlearn.methods.base import RetainMethod
from icu_unlearn.methods.config import RetainConfig, new_default
from icu_unlearn.methods.ga import GA
from icu_unlearn.methods.registry import register_method


@dataclass
class GADiffConfig(RetainConfig):
    """GA-Diff hyper-parameters: the shared ones plus the retain term (λ, retain batch size).

    Defaults: the pick of the calibration protocol on the tiny model (docs/calibration.md).
    """

    learning_rate: float = new_default(RetainConfig, "learning_rate", 2e-3)
    max_steps: int = new_default(RetainConfig, "max_steps", 100)
    retain_weight: float = new_default(RetainConfig, "retain_weight", 10.0)


@register_method
class GADiff(GA, RetainMethod):
    """``−L_NLL(forget) + λ·L_NLL(retain)``: GA's forget term, the shared retain term."""

    name = "ga_diff"
    config_class = GADiffConfig
