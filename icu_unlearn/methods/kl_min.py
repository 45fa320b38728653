"""KL-Min — gradient ascent on forget, descent on retain, and a KL anchor to the reference on retain.

Loss: ``−L_NLL(f) + λ·L_NLL(r) + w_KL · KL(p_ref ‖ p_θ)`` on the retain batch, the KL over all non-padding
positions and the whole vocabulary, ``batchmean`` over the flattened positions, i.e. a per-position mean
(MLLMU-Bench "KL_Min"; TOFU's KL; see :func:`icu_unlearn.losses.kl_to_reference`).

Continual choice — the reference is the vanilla model M_0 (the stage's LoRA adapter disabled), not the model
M_{k−1} at the start of stage k. Reasons: (1) retain behaviour should stay where the vanilla model had it;
anchoring to M_{k−1} would let each stage's drift become the next stage's target, so damage accumulates
without penalty over a long sequence of requests; (2) the vanilla model is what the continual metrics compare
every stage with (README, "Continual runs"); (3) it costs no second model: the reference is the same weights
with the adapter switched off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from icu_unlearn.methods.base import (
    RetainConfig,
    StepContext,
    UnlearningMethod,
    _non_negative,
    forward_logits,
    new_default,
    retain_nll,
)
from icu_unlearn.methods.registry import register_method

if TYPE_CHECKING:
    import torch


@dataclass
class KLMinConfig(RetainConfig):
    """KL-Min hyper-parameters: the shared ones, ``retain_weight`` λ, and ``kl_weight`` (≥ 0).

    Defaults are for the tiny model; the calibrated defaults are documented in the README.
    """

    learning_rate: float = new_default(RetainConfig, "learning_rate", 1e-3)
    kl_weight: float = field(
        default=1.0, metadata={"help": "weight (>= 0) of the KL term to the parent stage on retain-train."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        _non_negative(self, "kl_weight")


@register_method
class KLMin(UnlearningMethod):
    """``−L_NLL(f) + λ·L_NLL(r) + w·KL(p_M0 ‖ p_θ)(r)``."""

    name = "kl_min"
    config_class = KLMinConfig
    uses_retain = True

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, Any], ctx: StepContext) -> torch.Tensor:
        from icu_unlearn import losses

        forget, retain = batch["forget"], batch["retain"]
        loss = losses.ga_loss(forward_logits(model, forget), forget["labels"])
        retain_logits = forward_logits(model, retain)
        if self.config.retain_weight:
            loss = loss + retain_nll(model, batch, self.config.retain_weight, logits=retain_logits)
        if self.config.kl_weight:
            kl = losses.kl_to_reference(
                retain_logits, ctx.reference_logits(retain), retain.get("attention_mask")
            )
            loss = loss + self.config.kl_weight * kl
        return loss
