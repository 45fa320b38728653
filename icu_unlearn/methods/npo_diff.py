"""NPO-Diff — NPO on forget plus ``λ·L_NLL`` on retain (OpenUnlearning's NPO with its retain term).

Reference model: the vanilla model M_0, as for :mod:`icu_unlearn.methods.npo` (reasons there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from icu_unlearn.methods.base import (
    RetainConfig,
    StepContext,
    UnlearningMethod,
    _positive,
    new_default,
    retain_nll,
)
from icu_unlearn.methods.npo import npo_forget_loss
from icu_unlearn.methods.registry import register_method

if TYPE_CHECKING:
    import torch


@dataclass
class NPODiffConfig(RetainConfig):
    """NPO-Diff hyper-parameters: the shared ones, ``retain_weight`` λ and ``beta`` (> 0).

    Defaults are for the tiny model, λ = 3 to keep the retain set (the calibrated defaults and what they
    measured are in the README).
    """

    beta: float = field(
        default=0.5,
        metadata={"help": "NPO inverse temperature beta (> 0): larger is closer to gradient ascent."},
    )
    learning_rate: float = new_default(RetainConfig, "learning_rate", 7e-4)
    retain_weight: float = new_default(RetainConfig, "retain_weight", 3.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(self, "beta")


@register_method
class NPODiff(UnlearningMethod):
    """``NPO(forget) + λ·L_NLL(retain)``."""

    name = "npo_diff"
    config_class = NPODiffConfig
    uses_retain = True

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, Any], ctx: StepContext) -> torch.Tensor:
        loss = npo_forget_loss(model, batch["forget"], ctx, self.config.beta)
        if self.config.retain_weight:
            loss = loss + retain_nll(model, batch, self.config.retain_weight)
        return loss
