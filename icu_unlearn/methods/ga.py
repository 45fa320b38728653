"""GA — gradient ascent on the forget set: minimise ``−L_NLL(forget)``.

The simplest baseline (MLLMU-Bench, TOFU). With no retain term it has no middle ground: once the forget task
is gone, everything else degrades too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from icu_unlearn.methods.base import StepContext, UnlearningMethod, forward_logits
from icu_unlearn.methods.config import TrainingMethodConfig, new_default
from icu_unlearn.methods.registry import register_method

if TYPE_CHECKING:
    import torch


@dataclass
class GAConfig(TrainingMethodConfig):
    """GA hyper-parameters: only the shared ones (:class:`TrainingMethodConfig`).

    Defaults: the pick of the calibration protocol on the tiny model (docs/calibration.md).
    """

    learning_rate: float = new_default(TrainingMethodConfig, "learning_rate", 1e-3)
    max_steps: int = new_default(TrainingMethodConfig, "max_steps", 35)


@register_method
class GA(UnlearningMethod):
    """Gradient ascent: the loss is ``−L_NLL`` on the forget batch."""

    name = "ga"
    config_class = GAConfig

    def forget_loss(self, model: torch.nn.Module, forget: dict[str, Any], ctx: StepContext) -> torch.Tensor:
        from icu_unlearn.methods import losses

        return losses.ga_loss(forward_logits(model, forget), forget["labels"])
