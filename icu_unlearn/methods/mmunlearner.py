"""MMUnlearner — gradient ascent restricted to forget-salient weights, interleaved with retain descent.

Recipe ("MMUnlearner: Reformulating Multimodal Machine Unlearning in the Era of Multimodal Large Language
Models", ACL Findings 2025):

1. Diagonal Fisher estimates on the model at the start of the stage, per entry of the language model's weights:
   ``F_f[θ] = mean over forget batches of (∂L_NLL/∂θ)²`` and ``F_r`` the same over the *preserve* set =
   retain-train (both views) plus the text-only QA of the forget profiles (MMUnlearner erases the visual
   association and keeps the text knowledge).
2. Saliency ``m = 1[(F_f + 1e-15) / (F_r + 1e-15) ≥ γ]``, γ = 1.
3. A forget step (``−L_NLL(f)``, clipped, gradients multiplied by ``m``) followed by retain steps
   (``λ·L_NLL(r)``, unmasked): one forget step per ``len(retain-train) / len(forget task)`` retain steps
   (``retain_steps_per_forget``; ``max_steps`` counts both kinds).

Here (:mod:`icu_unlearn.methods.saliency`): the Fisher is taken on the *base* weights of the target modules
(the language model's attention and MLP projections, the reference's "language mask"). The update lives in a
PEFT SHiRA adapter — a sparse ``ΔW`` on chosen entries of each weight, stored as the stage checkpoint and
loaded with ``PeftModel.from_pretrained`` without merging. Deviations, both forced by SHiRA storing exactly
``r·(m + n)`` entries of an ``m × n`` weight: (1) each stage adds the ``shira_r·(m + n)`` entries of highest
Fisher ratio that the parent adapter does not hold (stage K's adapter: ``K·shira_r·(m + n)`` entries, the
parent's values carried over, so the checkpoint is cumulative); forget steps move only the adapter entries
with ratio ≥ γ; (2) retain steps move every adapter entry, not every weight. Entries with zero forget Fisher
are never salient (the literal formula would give 1e-15/1e-15 = 1 ≥ γ without any evidence).
``saliency.safetensors`` in the stage dir holds, per SHiRA parameter, 1 where the entry was salient.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from icu_tasks.errors import StageError
from icu_unlearn.methods.base import StageRows, StepContext
from icu_unlearn.methods.config import RetainConfig, new_default, non_negative, positive
from icu_unlearn.methods.ga_diff import GADiff
from icu_unlearn.methods.registry import register_method

if TYPE_CHECKING:
    import torch


@dataclass
class MMUnlearnerConfig(RetainConfig):
    """MMUnlearner hyper-parameters: the shared ones (no LoRA: its adapter is sparse) and the saliency's.

    ``max_steps`` counts forget and retain steps together. Defaults: the learning rate, schedule and step
    budget are the pick of the calibration protocol on the tiny model (docs/calibration.md).
    """

    unused_fields = ("lora_r", "lora_alpha", "lora_dropout")

    gamma: float = field(
        default=1.0,
        metadata={"help": "saliency threshold gamma on the Fisher ratio F_forget / F_preserve (> 0)."},
    )
    shira_r: int = field(
        default=8,
        metadata={
            "help": "sparse budget per stage (>= 1): the shira_r * (m + n) entries of highest Fisher ratio of each "
            "m x n target weight join the adapter (a rank-r LoRA's parameter count; stage K holds K times that)."
        },
    )
    retain_steps_per_forget: int = field(
        default=0,
        metadata={
            "help": "retain steps after each forget step (>= 0); 0 = len(retain-train) / len(forget task), "
            "rounded, at least 1 (the recipe's interleaving)."
        },
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
        metadata={"help": "optimizer steps in the stage, forget and retain steps together (>= 1)."},
    )
    learning_rate: float = new_default(RetainConfig, "learning_rate", 1e-3)

    def __post_init__(self) -> None:
        super().__post_init__()
        positive(self, "gamma", "retain_weight", "shira_r")
        non_negative(self, "fisher_batches", "retain_steps_per_forget")


@register_method
class MMUnlearner(GADiff):
    """Saliency-masked gradient ascent on forget, interleaved with unmasked descent on retain."""

    name = "mmunlearner"
    config_class = MMUnlearnerConfig

    def __init__(self, config: MMUnlearnerConfig | None = None) -> None:
        super().__init__(config)
        self.mask: dict[str, torch.Tensor] = {}
        self.period = 2
        self.info: dict[str, Any] = {}

    def attach_adapter(self, model: Any, data: StageRows, parent_dir: str | os.PathLike | None) -> Any:
        """Fisher saliency on the model as the parent left it, then a SHiRA adapter over the parent's entries
        plus this stage's most salient ones (see the module docstring)."""
        import torch

        from icu_unlearn.methods import saliency

        cfg = self.config
        model, held, parent_r, vanilla = _merged_parent(model, parent_dir, cfg.lora_target_modules)
        linears = saliency.target_linears(model, cfg.lora_target_modules)
        qa = [e for e in data.forget if e.view == "qa"] if cfg.preserve_forget_qa else []
        size = cfg.batch_size or len(data.forget)
        f_forget = saliency.diagonal_fisher(
            model, linears, data.forget, data.collate, size, cfg.fisher_batches
        )
        f_keep = saliency.diagonal_fisher(
            model, linears, data.retain + qa, data.collate, size, cfg.fisher_batches
        )
        with torch.no_grad():  # the vanilla weights back, bit for bit (ΔW starts from the parent's values)
            for n, weight in vanilla.items():
                linears[n].weight.copy_(weight)
        ratios = {n: saliency.fisher_ratio(f_forget[n], f_keep[n]) for n in linears}
        entries = {}
        for n, layer in linears.items():
            old = held[n][0] if n in held else None
            new = saliency.select_entries(ratios[n], old, cfg.shira_r * sum(layer.weight.shape)).cpu()
            entries[n] = new if old is None else torch.cat([old, new])
        model = saliency.sparse_adapter(model, cfg.lora_target_modules, parent_r + cfg.shira_r, entries, held)
        salient = {n: ratios[n] >= cfg.gamma for n in linears}
        self.mask = saliency.entry_masks(model, salient)
        total = sum(r.numel() for r in ratios.values())
        self.info = {
            "salient_fraction": sum(int(s.sum()) for s in salient.values()) / total,
            "adapter_entries": sum(len(e) for e in entries.values()),
            "salient_adapter_entries": int(sum(float(m.sum()) for m in self.mask.values())),
        }
        return model

    def prepare(self, model: torch.nn.Module, data: StageRows) -> None:
        """Fix the interleaving: one forget step, then ``retain_steps_per_forget`` retain steps."""
        ratio = self.config.retain_steps_per_forget or max(1, round(len(data.retain) / len(data.forget)))
        self.period = 1 + ratio
        self.info["retain_steps_per_forget"] = ratio

    def is_forget_step(self, step: int) -> bool:
        return step % self.period == 0

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, Any], ctx: StepContext) -> torch.Tensor:
        """GA's forget term on forget steps, the retain term (``λ·L_NLL``, λ > 0) on retain steps."""
        if self.is_forget_step(ctx.step):
            return self.forget_loss(model, batch["forget"], ctx)
        return self.retain_loss(model, batch["retain"], ctx)

    def before_optimizer_step(self, model: torch.nn.Module, ctx: StepContext) -> None:
        if not self.is_forget_step(ctx.step):
            return
        if not self.mask:
            raise RuntimeError("MMUnlearner.attach_adapter() was not called before training")
        for name, p in model.named_parameters():
            if p.grad is not None and name in self.mask:
                p.grad.mul_(self.mask[name].to(p.grad.device, p.grad.dtype))

    def artifacts(self) -> dict[str, dict[str, torch.Tensor]]:
        return (
            {"saliency.safetensors": {n: m.contiguous() for n, m in self.mask.items()}} if self.mask else {}
        )

    def stage_info(self) -> dict[str, Any]:
        return dict(self.info)


def _merged_parent(
    model: Any, parent_dir: str | os.PathLike | None, pattern: str
) -> tuple[Any, dict, int, dict]:
    """``(model, held, parent_r, vanilla)``: at stage 1 the base model as is; later the parent's SHiRA adapter
    merged in (SHiRA's forward reads the base weight detached, so the Fisher is taken on merged weights
    ``W + ΔW``), its entries and values (``held``), its ``r``, and copies of the vanilla target weights."""
    from icu_unlearn.methods import saliency
    from icu_unlearn.models.adapters import continue_stage

    if parent_dir is None:
        return model, {}, 0, {}
    model = continue_stage(model, parent_dir, trainable=False)
    config = model.peft_config["default"]
    peft_type = str(getattr(config, "peft_type", ""))
    if "SHIRA" not in peft_type.upper():
        raise StageError(
            f"{parent_dir} holds a {peft_type} adapter; MMUnlearner continues only its own stages"
        )
    held = saliency.adapter_entries(model)
    vanilla = {n: m.weight.detach().clone() for n, m in saliency.target_linears(model, pattern).items()}
    return model.merge_and_unload(), held, config.r, vanilla
