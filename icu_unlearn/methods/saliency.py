"""Weight-level saliency for MMUnlearner: diagonal Fisher on base weights and a sparse (SHiRA) stage adapter.

* :func:`diagonal_fisher` — ``F[θ] = mean over batches of (∂L_NLL/∂θ)²`` for every entry of the *base* weights
  of the target modules (through a PEFT model the gradient of the base weight is that of the effective weight
  ``W + Δ``, so a later stage measures the model as its parent left it).
* :func:`select_entries` — the stage's new entries: per module the ``budget`` entries of highest Fisher ratio
  ``(F_f + ε)/(F_r + ε)`` that the parent adapter does not hold yet.
* :func:`sparse_adapter` — a PEFT SHiRA adapter (``peft.ShiraConfig``: a sparse update ``ΔW`` on given entries of
  each target weight, never merged) over the parent's entries plus the new ones, starting from the parent's
  values, so that the stage's checkpoint is cumulative and loads with ``PeftModel.from_pretrained``.

SHiRA fixes the number of trainable entries of an ``m × n`` weight to ``r·(m + n)`` (the parameter count of a
rank-``r`` LoRA), one ``r`` for all modules. So the entries are the top ``r·(m + n)`` by Fisher ratio, not the
recipe's threshold ``ratio ≥ γ`` (γ marks which of them the forget steps may move, see
:mod:`icu_unlearn.methods.mmunlearner`), and stage K's adapter has ``r = K · shira_r``.

Costs: the two Fisher estimates are float32 copies of the target weights (from stage 2 also a copy of the
vanilla target weights, restored after the Fisher pass); SHiRA's forward adds the sparse ``ΔW`` to a copy of
each target weight on every call.
"""

from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING, Any

from icu_tasks.errors import ConfigError
from icu_unlearn.methods.base import TrainingExample, forward_logits
from icu_unlearn.models.loading import quiet_transformers

if TYPE_CHECKING:
    import torch


EPS = 1e-15
#: ``ShiraConfig.mask_type`` of a saliency adapter (anything but "random" means "the caller's mask_fn").
MASK_TYPE = "fisher_saliency"
_PEFT_PREFIX = "base_model.model."


def target_linears(model: Any, pattern: str) -> dict[str, Any]:
    """Base-model module name → the ``nn.Linear`` whose weight is adapted (inside a PEFT layer: its base)."""
    import torch

    regex = re.compile(pattern)
    out = {}
    for name, module in model.named_modules():
        base = name.removeprefix(_PEFT_PREFIX)
        if ".base_layer" in base or not regex.fullmatch(base):
            continue
        layer = module.get_base_layer() if hasattr(module, "get_base_layer") else module
        if isinstance(layer, torch.nn.Linear):
            out[base] = layer
    if not out:
        raise ConfigError(f"target pattern {pattern!r} matched no linear module of the model")
    return out


def diagonal_fisher(
    model: Any,
    linears: dict[str, Any],
    examples: list[TrainingExample],
    collate: Any,
    batch_size: int,
    max_batches: int = 0,
) -> dict[str, torch.Tensor]:
    """Mean over batches of the squared gradient of L_NLL w.r.t. each target weight (float32, weight-shaped)."""
    import torch
    from tqdm.auto import tqdm

    from icu_unlearn.methods import losses

    batches = [examples[i : i + batch_size] for i in range(0, len(examples), batch_size)]
    batches = batches[:max_batches] if max_batches else batches
    fisher = {n: torch.zeros_like(m.weight, dtype=torch.float32) for n, m in linears.items()}
    device = next(model.parameters()).device
    flags = {p: p.requires_grad for p in model.parameters()}
    was_training = model.training
    model.eval()
    try:
        for p in flags:
            p.requires_grad_(False)
        for m in linears.values():
            m.weight.requires_grad_(True)
        # a bar on a terminal only (disable=None), off under --quiet (TQDM_DISABLE)
        for chunk in tqdm(batches, desc="Fisher", unit="batch", disable=None, leave=False):
            inputs = collate(chunk)
            inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in inputs.items()}
            for m in linears.values():
                m.weight.grad = None
            losses.nll_loss(forward_logits(model, inputs), inputs["labels"]).backward()
            for n, m in linears.items():
                if m.weight.grad is not None:
                    fisher[n] += m.weight.grad.detach().float() ** 2
    finally:
        for p, flag in flags.items():
            p.grad = None
            p.requires_grad_(flag)
        model.train(was_training)
    return {n: f / max(len(batches), 1) for n, f in fisher.items()}


def fisher_ratio(forget: torch.Tensor, preserve: torch.Tensor) -> torch.Tensor:
    """``(F_f + ε)/(F_r + ε)``, with entries of zero forget Fisher set to 0 (no evidence, never salient)."""
    ratio = (forget + EPS) / (preserve + EPS)
    return ratio.masked_fill(forget <= 0, 0.0)


def select_entries(ratio: torch.Tensor, held: torch.Tensor | None, budget: int) -> torch.Tensor:
    """The ``budget`` flat indices of highest ``ratio`` outside ``held`` (flat indices already in the adapter)."""
    import torch

    score = ratio.flatten().clone()
    if held is not None and held.numel():
        score[held.long()] = -1.0
    if budget > int((score >= 0).sum()):
        raise ConfigError(
            f"the sparse adapter needs {budget} new entries in a {tuple(ratio.shape)} weight but only "
            f"{int((score >= 0).sum())} are left: lower shira_r (stage K's adapter holds K * shira_r * (m + n))"
        )
    return torch.topk(score, budget).indices


def adapter_entries(peft_model: Any) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """A SHiRA PEFT model's entries: module name → (flat indices into the weight, values), on CPU."""
    out = {}
    for name, module in peft_model.named_modules():
        if hasattr(module, "shira_indices") and "default" in getattr(module, "shira_indices", {}):
            rows, cols = module.shira_indices["default"].long().cpu()
            flat = rows * module.in_features + cols
            out[name.removeprefix(_PEFT_PREFIX)] = (
                flat,
                module.shira_weight["default"].detach().float().cpu(),
            )
    return out


def sparse_adapter(
    model: Any, pattern: str, r: int, entries: dict[str, torch.Tensor], start: dict[str, tuple] | None = None
) -> Any:
    """``model`` (no adapter) wrapped with a SHiRA adapter of rank ``r`` on exactly ``entries`` (module → flat
    indices, ``r·(m + n)`` each); entries listed in ``start`` (module → (flat indices, values)) begin there."""
    import torch
    from peft import ShiraConfig, get_peft_model

    linears = target_linears(model, pattern)
    masks = {}
    for name, layer in linears.items():
        mask = torch.zeros(layer.weight.numel(), dtype=layer.weight.dtype, device=layer.weight.device)
        mask[entries[name].to(mask.device)] = 1.0
        masks[id(layer)] = mask.view_as(layer.weight)

    def mask_fn(base_layer: Any, r: int, **_: Any) -> torch.Tensor:
        return masks[id(base_layer)]

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*mask_type.*is not recognized.*")
        config = ShiraConfig(r=r, mask_type=MASK_TYPE, target_modules=pattern)
    config.mask_fn = mask_fn
    with quiet_transformers():
        peft_model = get_peft_model(model, config)
    for name, (flat, values) in (start or {}).items():
        new_flat, weight = adapter_entries(peft_model)[name][0], _shira_weight(peft_model, name)
        pos = torch.searchsorted(new_flat, flat)
        with torch.no_grad():
            weight[pos.to(weight.device)] = values.to(weight.device, weight.dtype)
    return peft_model


def _shira_weight(peft_model: Any, name: str) -> torch.nn.Parameter:
    return peft_model.get_submodule(_PEFT_PREFIX + name).shira_weight["default"]


def entry_masks(peft_model: Any, salient: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per SHiRA parameter name: 1 where the adapter entry is salient (``salient``: module → bool weight-shaped)."""
    out = {}
    for name, (flat, _) in adapter_entries(peft_model).items():
        out[f"{_PEFT_PREFIX}{name}.shira_weight.default"] = salient[name].flatten()[flat].float()
    return out
