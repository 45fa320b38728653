"""MMUnlearner — gradient ascent restricted to forget-salient parameters, interleaved with retain descent.

Recipe ("MMUnlearner: Reformulating Multimodal Machine Unlearning in the Era of
Multimodal Large Language Models", ACL Findings 2025):

1. Diagonal Fisher estimates at the start of the stage: ``F_f[θ] = mean over forget batches of (∂L_NLL/∂θ)²``
   and ``F_r`` the same over the *preserve* set = retain-train (both views) plus the text-only QA of the
   forget profiles (MMUnlearner erases the visual association and keeps the text knowledge).
2. Saliency mask ``m = 1[(F_f + 1e-15) / (F_r + 1e-15) ≥ γ]``, γ = 1.
3. Alternating optimizer steps: even steps are forget steps (``−L_NLL(f)``, clipped, gradients multiplied by
   ``m``, then the optimizer step), odd steps are retain steps (``λ·L_NLL(r)``, unmasked). ``max_steps``
   counts both kinds, so the default is twice the other methods'.

Deviations, because our stages train a LoRA adapter on the language model rather than the full weights:
the Fisher and the mask are over the *trainable* parameters (LoRA A/B of the language model's projections,
the reference's "language mask"). Entries with zero forget Fisher are not salient: at a fresh adapter
``lora_B = 0`` makes every ``lora_A`` gradient exactly zero, and the literal formula would call those
entries salient (1e-15/1e-15 = 1 ≥ γ) without any evidence. The mask is saved as ``saliency.safetensors``
(PEFT parameter name → 0/1 tensor) in the stage dir for inspection; it is not an inference-time mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from icu_unlearn.methods.base import StepContext, forward_logits
from icu_unlearn.methods.config import RetainConfig, new_default, non_negative, positive
from icu_unlearn.methods.ga_diff import GADiff
from icu_unlearn.methods.registry import register_method

if TYPE_CHECKING:
    import torch

    from icu_unlearn.training_data import Example, StageData

EPS = 1e-15


@dataclass
class MMUnlearnerConfig(RetainConfig):
    """MMUnlearner hyper-parameters.

    Attributes:
        gamma: saliency threshold γ on the Fisher ratio (> 0).
        fisher_batches: at most this many batches per set for the Fisher estimates (0 = all).
        preserve_forget_qa: add the forget profiles' text-only QA to the preserve set (the reference does).

    Defaults are for the tiny model (smoke-test scale); the calibrated defaults and what they measured are
    documented in the README. ``max_steps`` counts forget and retain steps, so it is twice the other
    methods'. MMUnlearner is the slowest to forget the text view, by design (the forget profiles' QA is in the
    preserve set, so the parameters that carry it are not salient).
    """

    gamma: float = field(
        default=1.0, metadata={"help": "saliency threshold gamma on the Fisher ratio (> 0)."}
    )
    fisher_batches: int = field(
        default=0, metadata={"help": "at most this many batches per set for the Fisher estimates (0 = all)."}
    )
    preserve_forget_qa: bool = field(
        default=True,
        metadata={"help": "add the forget profiles' text-only QA to the preserve set (the reference does)."},
    )
    max_steps: int = field(
        default=200,
        metadata={
            "help": "optimizer steps in the stage, forget and retain steps together (>= 1).",
            "training": True,
        },
    )
    learning_rate: float = new_default(RetainConfig, "learning_rate", 1e-3)

    def __post_init__(self) -> None:
        super().__post_init__()
        positive(self, "gamma", "retain_weight")
        non_negative(self, "fisher_batches")


def diagonal_fisher(
    model: torch.nn.Module, examples: list[Example], collate: Any, batch_size: int, max_batches: int = 0
) -> dict[str, torch.Tensor]:
    """Mean over batches of the squared gradient of L_NLL, for every trainable parameter."""
    import torch

    from icu_unlearn import losses

    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    fisher = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    batches = [examples[i : i + batch_size] for i in range(0, len(examples), batch_size)]
    if max_batches:
        batches = batches[:max_batches]
    was_training = model.training
    model.eval()
    try:
        for chunk in batches:
            inputs = collate(chunk)
            model.zero_grad(set_to_none=True)
            loss = losses.nll_loss(forward_logits(model, inputs), inputs["labels"])
            loss.backward()
            for n, p in params.items():
                if p.grad is not None:
                    fisher[n] += p.grad.detach().float() ** 2
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return {n: f / max(len(batches), 1) for n, f in fisher.items()}


def saliency_mask(fisher_forget: dict, fisher_preserve: dict, gamma: float) -> dict[str, torch.Tensor]:
    """``1[(F_f + ε)/(F_r + ε) ≥ γ]`` and ``F_f > 0`` (see the module docstring), as float 0/1 tensors."""
    return {
        n: (((f + EPS) / (fisher_preserve[n] + EPS) >= gamma) & (f > 0)).float()
        for n, f in fisher_forget.items()
    }


@register_method
class MMUnlearner(GADiff):
    """Saliency-masked gradient ascent on forget, alternating with unmasked descent on retain."""

    name = "mmunlearner"
    config_class = MMUnlearnerConfig
    uses_retain = True

    def __init__(self, config: MMUnlearnerConfig | None = None) -> None:
        super().__init__(config)
        self.mask: dict[str, torch.Tensor] = {}

    def prepare(self, model: torch.nn.Module, data: StageData) -> None:
        cfg = self.config
        preserve = list(data.retain)
        if cfg.preserve_forget_qa:
            preserve += [e for e in data.forget if e.view == "qa"]
        f_forget = diagonal_fisher(model, data.forget, data.collate, cfg.batch_size, cfg.fisher_batches)
        f_preserve = diagonal_fisher(model, preserve, data.collate, cfg.batch_size, cfg.fisher_batches)
        self.mask = saliency_mask(f_forget, f_preserve, cfg.gamma)

    @staticmethod
    def is_forget_step(step: int) -> bool:
        return step % 2 == 0

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, Any], ctx: StepContext) -> torch.Tensor:
        """GA's forget term on forget steps, the retain term (``λ·L_NLL``, λ > 0) on retain steps."""
        if self.is_forget_step(ctx.step):
            return self.forget_loss(model, batch["forget"], ctx)
        return self.retain_loss(model, batch["retain"], ctx)

    def before_optimizer_step(self, model: torch.nn.Module, ctx: StepContext) -> None:
        if not self.is_forget_step(ctx.step):
            return
        if not self.mask:
            raise RuntimeError("MMUnlearner.prepare() was not called before training")
        for name, p in model.named_parameters():
            if p.grad is not None and name in self.mask:
                p.grad.mul_(self.mask[name].to(p.grad.device, p.grad.dtype))

    def artifacts(self) -> dict[str, dict[str, torch.Tensor]]:
        return (
            {"saliency.safetensors": {n: m.contiguous() for n, m in self.mask.items()}} if self.mask else {}
        )

    def stage_info(self) -> dict[str, Any]:
        total = sum(m.numel() for m in self.mask.values())
        salient = sum(float(m.sum()) for m in self.mask.values())
        return {"salient_fraction": salient / total if total else 0.0}
