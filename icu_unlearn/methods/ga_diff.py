"""GA-Diff — gradient ascent on forget plus descent on retain: ``−L_NLL(f) + λ·L_NLL(r)``.

Both terms in one optimizer step (OpenUnlearning's "GradDiff"; MLLMU-Bench alternates a forget and a retain
pass, which is the same update to first order). The retain batch comes from retain-train, never retain-eval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from icu_unlearn.methods.base import (
    RetainConfig,
    StepContext,
    UnlearningMethod,
    forward_logits,
    new_default,
    retain_nll,
)
from icu_unlearn.methods.registry import register_method

if TYPE_CHECKING:
    import torch


@dataclass
class GADiffConfig(RetainConfig):
    """GA-Diff hyper-parameters: the shared ones plus ``retain_weight`` λ.

    Defaults are for the tiny model; the calibrated defaults are documented in the README.
    """

    learning_rate: float = new_default(RetainConfig, "learning_rate", 7e-4)


@register_method
class GADiff(UnlearningMethod):
    """``−L_NLL(forget) + λ·L_NLL(retain)``."""

    name = "ga_diff"
    config_class = GADiffConfig
    uses_retain = True

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, Any], ctx: StepContext) -> torch.Tensor:
        from icu_unlearn import losses

        forget = batch["forget"]
        loss = losses.ga_loss(forward_logits(model, forget), forget["labels"])
        if self.config.retain_weight:
            loss = loss + retain_nll(model, batch, self.config.retain_weight)
        return loss
