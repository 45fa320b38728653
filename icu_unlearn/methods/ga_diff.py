"""GA-Diff — gradient ascent on forget plus descent on retain: ``−L_NLL(f) + λ·L_NLL(r)``.

Both terms in one optimizer step (OpenUnlearning's "GradDiff"; MLLMU-Bench alternates a forget and a retain
pass, which is the same update to first order). The retain batch comes from retain-train, never retain-eval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from icu_unlearn.methods import register_method
from icu_unlearn.methods.base import RetainConfig, StepContext, UnlearningMethod, forward_logits

if TYPE_CHECKING:
    import torch


@dataclass
class GADiffConfig(RetainConfig):
    """GA-Diff hyper-parameters: the shared ones plus ``retain_weight`` λ.

    Default lr 7e-4, λ = 1 (tiny model, 50 steps of 8 + 8): task 1 QA 0.88 → 0.13, retain-eval QA 0.90 → 0.64.
    """

    learning_rate: float = 7e-4


@register_method
class GADiff(UnlearningMethod):
    """``−L_NLL(forget) + λ·L_NLL(retain)``."""

    name = "ga_diff"
    config_class = GADiffConfig
    uses_retain = True

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, Any], ctx: StepContext) -> torch.Tensor:
        from icu_unlearn import losses

        forget, retain = batch["forget"], batch["retain"]
        loss = losses.ga_loss(forward_logits(model, forget), forget["labels"])
        if self.config.retain_weight:
            loss = loss + self.config.retain_weight * losses.nll_loss(
                forward_logits(model, retain), retain["labels"]
            )
        return loss
