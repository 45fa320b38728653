"""NPO-Diff — NPO on forget plus ``λ·L_NLL`` on retain (OpenUnlearning's NPO with its retain term).

Reference model: the vanilla model M_0, as for :mod:`icu_unlearn.methods.npo` (reasons there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from icu_unlearn.methods import register_method
from icu_unlearn.methods.base import RetainConfig, StepContext, UnlearningMethod, _positive, forward_logits
from icu_unlearn.methods.npo import npo_forget_loss

if TYPE_CHECKING:
    import torch


@dataclass
class NPODiffConfig(RetainConfig):
    """NPO-Diff hyper-parameters: the shared ones, ``retain_weight`` λ and ``beta`` (> 0).

    Defaults lr 7e-4, λ = 3 (tiny model, 50 steps of 8 + 8): task 1 QA 0.88 → 0.06, retain-eval QA 0.90 → 0.69
    (λ = 1 keeps only 0.47 of it).
    """

    beta: float = 0.5
    learning_rate: float = 7e-4
    retain_weight: float = 3.0

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
        from icu_unlearn import losses

        loss = npo_forget_loss(model, batch["forget"], ctx, self.config.beta)
        if self.config.retain_weight:
            retain = batch["retain"]
            loss = loss + self.config.retain_weight * losses.nll_loss(
                forward_logits(model, retain), retain["labels"]
            )
        return loss
