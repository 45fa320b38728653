"""NPO-Diff — NPO on forget plus ``λ·L_NLL`` on retain (OpenUnlearning's NPO with its retain term).

Composed like OpenUnlearning's ``NPO(GradDiff)``: NPO's forget term on GA-Diff's frame. Reference model: the
vanilla model M_0, as for :mod:`icu_unlearn.methods.npo` (reasons there).
"""

from __future__ import annotations

from dataclasses import dataclass

from icu_unlearn.methods.config import RetainConfig, new_default, positive
from icu_unlearn.methods.ga_diff import GADiff
from icu_unlearn.methods.npo import NPO, NPOConfig
from icu_unlearn.methods.registry import register_method


@dataclass
class NPODiffConfig(RetainConfig):
    """NPO-Diff hyper-parameters: the shared ones, the retain term and ``beta`` (> 0).

    Defaults: the pick of the calibration protocol on the tiny model (docs/calibration.md).
    """

    beta: float = new_default(NPOConfig, "beta", 0.5)
    learning_rate: float = new_default(RetainConfig, "learning_rate", 1e-3)
    max_steps: int = new_default(RetainConfig, "max_steps", 100)
    retain_weight: float = new_default(RetainConfig, "retain_weight", 3.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        positive(self, "beta")


@register_method
class NPODiff(NPO, GADiff):
    """``NPO(forget) + λ·L_NLL(retain)``: NPO's forget term, GA-Diff's retain term."""

    name = "npo_diff"
    config_class = NPODiffConfig
