"""SimNPO — simple (reference-free) negative preference optimisation, with a retain term.

Fan et al., "Simplicity Prevails: Rethinking Negative Preference Optimization for LLM Unlearning"
(arXiv 2410.07163). NPO compares the model with a reference model; SimNPO drops the reference and normalises
the answer's log-probability by its length:

    L = (2/β) · mean_i −log σ(−(β/|y_i|)·log π_θ(y_i|x_i) − γ)  +  λ · L_NLL(retain)

with |y_i| the number of answer tokens, β > 0 the inverse temperature and γ ≥ 0 a reward margin.

This module is the whole method: a config dataclass (its own fields, checked) and a class that says what it
does on the forget batch. The retain term, the training loop, the adapter and the stage dir come from
ICU-Bench; the package's entry point (``pyproject.toml``) registers the class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from icu_unlearn.methods import RetainConfig, RetainMethod, StepContext
from icu_unlearn.methods.base import forward_logits
from icu_unlearn.methods.config import non_negative, positive

if TYPE_CHECKING:
    import torch


@dataclass
class SimNPOConfig(RetainConfig):
    """SimNPO hyper-parameters: the shared training ones, the retain weight λ, and ``beta``, ``gamma``."""

    beta: float = field(
        default=2.5,
        metadata={"help": "SimNPO inverse temperature beta (> 0) on the length-normalised log-prob."},
    )
    gamma: float = field(default=0.0, metadata={"help": "SimNPO reward margin gamma (>= 0)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        positive(self, "beta")
        non_negative(self, "gamma")


def simnpo_loss(logits: torch.Tensor, labels: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """``(2/β) · mean_i softplus((β/|y_i|)·log π_θ(y_i|x_i) + γ)`` (``−log σ(−x) = softplus(x)``)."""
    import torch.nn.functional as F

    from icu_unlearn.methods import losses

    logp, mask = losses.token_log_probs(logits, labels)
    length = mask.sum(dim=-1).clamp(min=1)
    mean_logp = logp.sum(dim=-1) / length
    return (2.0 / beta) * F.softplus(beta * mean_logp + gamma).mean()


class SimNPO(RetainMethod):
    """SimNPO on the forget batch (no reference model) plus λ·NLL on retain-train."""

    name = "simnpo"
    config_class = SimNPOConfig

    def forget_loss(self, model: torch.nn.Module, forget: dict[str, Any], ctx: StepContext) -> torch.Tensor:
        cfg = self.config
        return simnpo_loss(forward_logits(model, forget), forget["labels"], cfg.beta, cfg.gamma)
