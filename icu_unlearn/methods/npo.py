"""NPO — negative preference optimisation on the forget set.

Loss: ``(2/β)·mean_i −log σ(−β·(log π_θ(y_i|x_i) − log π_ref(y_i|x_i)))`` with per-sequence *summed*
answer log-probs (OpenUnlearning). β defaults to 0.5 (MLLMU-Bench uses 0.4, OpenUnlearning 1.0; 0.5 is what
was measured on the tiny model).

Continual choice — the reference π_ref is the vanilla model M_0 (the adapter disabled), not M_{k−1}.
NPO's loss saturates once π_θ is far below π_ref on the forget answers; measuring that against M_0 means
"how far below what the original model knew", which is the quantity a deletion request is about. M_{k−1}
can already have lost part of task k through earlier stages' collateral damage, and a lowered reference would
let NPO stop early on exactly the tasks that were partially damaged. M_0 also needs no second copy of the
weights (same weights, adapter switched off), so the cost does not grow with the number of stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from icu_unlearn.methods.base import StepContext, UnlearningMethod, forward_logits
from icu_unlearn.methods.config import TrainingMethodConfig, new_default, positive
from icu_unlearn.methods.registry import register_method

if TYPE_CHECKING:
    import torch


@dataclass
class NPOConfig(TrainingMethodConfig):
    """NPO hyper-parameters: the shared ones plus the inverse temperature ``beta`` (> 0).

    Defaults: the pick of the calibration protocol on the tiny model (docs/calibration.md).
    """

    learning_rate: float = new_default(TrainingMethodConfig, "learning_rate", 1e-3)
    max_steps: int = new_default(TrainingMethodConfig, "max_steps", 40)
    beta: float = field(
        default=0.5,
        metadata={"help": "NPO inverse temperature beta (> 0): larger is closer to gradient ascent."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        positive(self, "beta")


@register_method
class NPO(UnlearningMethod):
    """NPO on the forget batch, reference = vanilla model M_0."""

    name = "npo"
    config_class = NPOConfig

    def forget_loss(self, model: torch.nn.Module, forget: dict[str, Any], ctx: StepContext) -> torch.Tensor:
        from icu_unlearn.methods import losses

        labels = forget["labels"]
        logp = losses.sequence_log_probs(forward_logits(model, forget), labels)
        logp_ref = losses.sequence_log_probs(ctx.reference_logits(forget), labels)
        return losses.npo_loss(logp, logp_ref, self.config.beta)
