"""GA — gradient ascent on the forget set: minimise ``−L_NLL(forget)``.

The simplest baseline (MLLMU-Bench, TOFU). With no retain term it has no middle ground: once the forget task
is gone, everything else degrades too (see the README's measured results).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from icu_unlearn.methods.base import MethodConfig, StepContext, UnlearningMethod, forward_logits, new_default
from icu_unlearn.methods.registry import register_method

if TYPE_CHECKING:
    import torch


@dataclass
class GAConfig(MethodConfig):
    """GA hyper-parameters: only the shared ones (:class:`MethodConfig`); tiny-model defaults (README)."""

    learning_rate: float = new_default(MethodConfig, "learning_rate", 4e-4)


@register_method
class GA(UnlearningMethod):
    """Gradient ascent: the loss is ``−L_NLL`` on the forget batch."""

    name = "ga"
    config_class = GAConfig

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, Any], ctx: StepContext) -> torch.Tensor:
        from icu_unlearn import losses

        forget = batch["forget"]
        return losses.ga_loss(forward_logits(model, forget), forget["labels"])
