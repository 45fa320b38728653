"""KL-Min — gradient ascent on forget, descent on retain, and a KL anchor to the reference on retain.

Loss: ``−L_NLL(f) + λ·L_NLL(r) + w_KL · KL(p_ref ‖ p_θ)`` on the retain batch, the KL over all non-padding
positions and the whole vocabulary, ``batchmean`` over the flattened positions, i.e. a per-position mean
(MLLMU-Bench "KL_Min"; TOFU's KL; see :func:`icu_unlearn.methods.losses.kl_to_reference`).

Continual choice — the reference is the vanilla model M_0 (the stage's LoRA adapter disabled), not the model
M_{k−1} at the start of stage k. Reasons: (1) retain behaviour should stay where the vanilla model had it;
anchoring to M_{k−1} would let each stage's drift become the next stage's target, so damage accumulates
without penalty over a long sequence of requests; (2) the vanilla model is what the continual metrics compare
every stage with (docs/metrics.md); (3) it costs no second model: the reference is the same weights
with the adapter switched off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from icu_unlearn.methods.base import StepContext, forward_logits
from icu_unlearn.methods.config import RetainConfig, new_default, non_negative
from icu_unlearn.methods.ga_diff import GADiff
from icu_unlearn.methods.registry import register_method

if TYPE_CHECKING:
    import torch


@dataclass
class KLMinConfig(RetainConfig):
    """KL-Min hyper-parameters: the shared ones, the retain term and ``kl_weight`` (>= 0).

    Defaults: the pick of the calibration protocol on the tiny model (docs/calibration.md).
    """

    learning_rate: float = new_default(RetainConfig, "learning_rate", 2e-3)
    max_steps: int = new_default(RetainConfig, "max_steps", 100)
    retain_weight: float = new_default(RetainConfig, "retain_weight", 20.0)
    kl_weight: float = field(
        default=1.0, metadata={"help": "weight (>= 0) of the KL term to the vanilla model on retain-train."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        non_negative(self, "kl_weight")


@register_method
class KLMin(GADiff):
    """``−L_NLL(f) + λ·L_NLL(r) + w·KL(p_M0 ‖ p_θ)(r)``: GA-Diff with a KL anchor in its retain term."""

    name = "kl_min"
    config_class = KLMinConfig

    def retain_loss(
        self, model: torch.nn.Module, retain: dict[str, Any], ctx: StepContext
    ) -> torch.Tensor | None:
        """``λ·L_NLL(r) + w·KL(p_ref ‖ p_θ)(r)`` from one forward pass; ``None`` when both weights are 0."""
        from icu_unlearn.methods import losses

        cfg = self.config
        if not (cfg.retain_weight or cfg.kl_weight):
            return None
        logits = forward_logits(model, retain)
        loss = cfg.retain_weight * losses.nll_loss(logits, retain["labels"]) if cfg.retain_weight else 0.0
        if cfg.kl_weight:
            kl = losses.kl_to_reference(logits, ctx.reference_logits(retain), retain.get("attention_mask"))
            loss = loss + cfg.kl_weight * kl
        return loss
