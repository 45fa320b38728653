"""MANU — training-free unlearning by pruning the MLP neurons most specific to the forget set.

Recipe (MANU, "Modality-Aware Neuron Pruning for Unlearning in Multimodal Large Language
Models", ACL 2025):

1. Forward hooks on MLP outputs of the last ``last_layers`` layers of each tower: the vision encoder's
   ``fc1/fc2`` fed image+text passes (the VQA view), the language model's ``gate/up/down_proj`` fed text-only
   passes (the QA view, where the person is named). Forget and retain-train separately, the same number of
   batches. Inputs are the full training conversations (question + answer).
2. Per neuron (output channel; mean over batch and non-padding positions; activations clamped to ±1e3):
   ``I_abs = mean|a|``, ``I_freq = mean 1[|a| > 0.1]``, ``I_var = std(a)``, ``I_rms = sqrt(mean a²)``.
3. Score ``S = Σ_m w_m · (I_m^forget / (I_m^retain + 1e-5) − 1)`` with ``w = {abs 2, freq 0, var 2, rms 2}``.
4. Per group (tower × module kind, across the selected layers) prune the top ``prune_fraction`` channels.

Continual: every stage acts on its own forget task. Statistics are taken on the current model (the parent
stage's adapter and masks applied, so already pruned channels read zero and are never chosen again) with the
stage's forget rows against retain-train, and the stage prunes ``prune_fraction`` more of each group's
channels: the channels most specific to *its* forget task. The stage's masks are the union with the parent's
(they accumulate), so after stage k about k × ``prune_fraction`` of each group is pruned. ``max_total_fraction``
caps that total; the default cap is reached only after ``max_total_fraction / prune_fraction`` stages, never at
stage 1. A stage that finds every group at its cap prunes nothing new and records ``cap_reached`` in stage.json
(the run goes on; any other stage that prunes nothing is refused by the stage guard). Pruning is stored as
inference-time output-channel masks (``masks.safetensors``: base-model module name → 0/1 ``[out_features]``),
which zero the neuron's output row and bias exactly as weight surgery would, without touching the base weights.
The stage dir still carries the parent's adapter (or an identity rank-1 LoRA at stage 1) so it is complete on
its own.

On a 3.6 M-parameter model the facts live in few, shared neurons, so MANU barely separates forget from retain
(docs/methods.md, "The methods at one amount of forgetting"); that is a finding, not a bug.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from icu_tasks.errors import ConfigError
from icu_unlearn.methods.base import StageRows, TrainingExample, UnlearningMethod
from icu_unlearn.methods.config import LM_LORA_TARGETS, MethodConfig, non_negative, positive
from icu_unlearn.methods.registry import register_method

if TYPE_CHECKING:
    import torch


VISION_MLP = re.compile(
    r"(?:^|\.)(?:vision_tower|visual|vision_model)\..*?(?:layers|blocks)\.(\d+)\.mlp\.(fc1|fc2|gate_proj|up_proj|down_proj)$"
)
LANGUAGE_MLP = re.compile(r"(?:^|\.)language_model\..*?layers\.(\d+)\.mlp\.(gate_proj|up_proj|down_proj)$")
PEFT_PREFIX = "base_model.model."
STAT_NAMES = ("abs", "freq", "var", "rms")


@dataclass
class MANUConfig(MethodConfig):
    """MANU hyper-parameters: pruning settings only (training-free: no learning rate, steps or adapter).

    Defaults: ``last_layers`` is the pick of the calibration protocol on the tiny model; ``prune_fraction`` is a
    per-stage fraction and ``max_total_fraction`` a cap that a run of the benchmark's length does not reach
    (docs/calibration.md, "Defaults set", says how both were set).

    Attributes:
        calib_batch_size: examples per forward pass of the activation statistics (≥ 1).
        prune_fraction: fraction of each group's channels pruned per stage, in (0, 1].
        max_total_fraction: cap on the cumulative pruned fraction per group over all stages, in (0, 1].
        last_layers: how many of the last layers of each tower are candidates (≥ 1).
        calib_batches: at most this many batches per set (0 = as many as the smaller set has).
        weights: score weights per statistic (abs, freq, var, rms), each ≥ 0.
        freq_threshold: |a| above which a neuron counts as firing, for ``I_freq``.
        clamp: activations are clamped to ±clamp before the statistics.
    """

    calib_batch_size: int = field(
        default=8, metadata={"help": "examples per forward pass of the activation statistics (>= 1)."}
    )
    prune_fraction: float = field(
        default=0.05,
        metadata={
            "help": "fraction of each group's channels pruned per stage (masks accumulate), in (0, 1]."
        },
    )
    max_total_fraction: float = field(
        default=0.5,
        metadata={"help": "cap on the cumulative pruned fraction per group over all stages, in (0, 1]."},
    )
    last_layers: int = field(
        default=4, metadata={"help": "how many of the last layers of each tower are candidates (>= 1)."}
    )
    calib_batches: int = field(
        default=0,
        metadata={"help": "at most this many batches per set (0 = as many as the smaller set has)."},
    )
    weights: dict[str, float] = field(
        default_factory=lambda: {"abs": 2.0, "freq": 0.0, "var": 2.0, "rms": 2.0},
        metadata={"help": "score weights per statistic (abs, freq, var, rms), each >= 0."},
    )
    freq_threshold: float = field(
        default=0.1, metadata={"help": "|a| above which a neuron counts as firing, for I_freq."}
    )
    clamp: float = field(
        default=1e3, metadata={"help": "activations are clamped to +-clamp before the statistics."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("prune_fraction", "max_total_fraction"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        positive(self, "calib_batch_size", "last_layers", "clamp")
        non_negative(self, "calib_batches", "freq_threshold")
        if set(self.weights) != set(STAT_NAMES) or any(not w >= 0 for w in self.weights.values()):
            raise ConfigError(
                f"weights must give a value >= 0 for exactly {', '.join(STAT_NAMES)}: {self.weights}"
            )


def mlp_modules(model: torch.nn.Module, last_layers: int) -> dict[str, tuple[str, str, Any]]:
    """MLP modules of the last ``last_layers`` layers per tower: base-model name → (tower, kind, module).

    Names are as in the *base* model's ``named_modules()`` (a PEFT wrapper's prefix is stripped; for a
    LoRA-wrapped layer the outer module is hooked, so its output includes the adapter's contribution).
    """
    found: dict[str, tuple[str, int, str, Any]] = {}
    for name, module in model.named_modules():
        if ".base_layer" in name or ".lora_" in name:
            continue
        base = name[len(PEFT_PREFIX) :] if name.startswith(PEFT_PREFIX) else name
        for tower, pattern in (("vision", VISION_MLP), ("language", LANGUAGE_MLP)):
            m = pattern.search(base)
            if m:
                found[base] = (tower, int(m.group(1)), m.group(2), module)
    keep: dict[str, tuple[str, str, Any]] = {}
    for tower in ("vision", "language"):
        layers = sorted({layer for t, layer, _, _ in found.values() if t == tower})[-last_layers:]
        for base, (t, layer, kind, module) in found.items():
            if t == tower and layer in layers:
                keep[base] = (tower, kind, module)
    return keep


class _Stats:
    """Running sums of one module's output channels over positions."""

    def __init__(self) -> None:
        self.n = 0.0
        self.sums: dict[str, Any] = {}

    def add(self, a: torch.Tensor, threshold: float) -> None:
        a = a.double()
        parts = {
            "s1": a.sum(0),
            "s2": (a * a).sum(0),
            "abs": a.abs().sum(0),
            "freq": (a.abs() > threshold).sum(0),
        }
        for k, v in parts.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v.double()
        self.n += a.shape[0]

    def importance(self) -> dict[str, torch.Tensor]:
        n = max(self.n, 1.0)
        mean, sq = self.sums["s1"] / n, self.sums["s2"] / n
        return {
            "abs": self.sums["abs"] / n,
            "freq": self.sums["freq"] / n,
            "var": (sq - mean * mean).clamp(min=0).sqrt(),
            "rms": sq.sqrt(),
        }


def activation_stats(
    model: torch.nn.Module,
    modules: dict[str, Any],
    examples: list[TrainingExample],
    collate: Any,
    batch_size: int,
    n_batches: int,
    cfg: MANUConfig,
) -> dict[str, dict[str, torch.Tensor]]:
    """Per-channel importance statistics of ``modules`` (name → module) over ``n_batches`` batches."""
    import torch
    from tqdm.auto import tqdm

    stats = {name: _Stats() for name in modules}
    current: dict[str, Any] = {}

    def hook_for(name: str):
        def hook(_module, _inputs, output):
            a = output[0] if isinstance(output, tuple) else output
            a = a.detach().clamp(-cfg.clamp, cfg.clamp).reshape(-1, a.shape[-1])
            keep = current.get("keep")
            if keep is not None and keep.numel() == a.shape[0]:
                a = a[keep]
            stats[name].add(a, cfg.freq_threshold)

        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in modules.items()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            # a bar on a terminal only (disable=None), off under --quiet (TQDM_DISABLE)
            for i in tqdm(range(n_batches), desc="MANU statistics", unit="batch", disable=None, leave=False):
                inputs = collate(examples[i * batch_size : (i + 1) * batch_size])
                mask = inputs.get("attention_mask")
                current["keep"] = mask.reshape(-1).bool() if mask is not None else None
                model(**{k: v for k, v in inputs.items() if k != "labels"})
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {name: s.importance() for name, s in stats.items()}


def neuron_scores(
    model: torch.nn.Module, modules: dict[str, tuple[str, str, Any]], data: StageRows, cfg: MANUConfig
) -> dict[str, torch.Tensor]:
    """Score ``S`` (step 3) of every output channel of ``modules``: the vision tower's from the VQA view, the
    language model's from the QA view, forget vs retain over the same number of batches."""
    by_tower = {t: {n: m for n, (tw, _, m) in modules.items() if tw == t} for t in ("vision", "language")}
    scores: dict[str, torch.Tensor] = {}
    for tower, view in (("vision", "vqa"), ("language", "qa")):
        if not by_tower[tower]:
            continue
        forget = [e for e in data.forget if e.view == view]
        retain = [e for e in data.retain if e.view == view]
        size = cfg.calib_batch_size
        n = min(math.ceil(len(forget) / size), math.ceil(len(retain) / size))
        n = min(n, cfg.calib_batches) if cfg.calib_batches else n
        if n == 0:
            continue
        imp_f = activation_stats(model, by_tower[tower], forget, data.collate, size, n, cfg)
        imp_r = activation_stats(model, by_tower[tower], retain, data.collate, size, n, cfg)
        for name in by_tower[tower]:
            scores[name] = sum(
                cfg.weights[s] * (imp_f[name][s] / (imp_r[name][s] + 1e-5) - 1.0) for s in STAT_NAMES
            )
    return scores


def prune_group(
    names: list[str], scores: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], cfg: MANUConfig
) -> tuple[bool, dict[str, int]]:
    """Prune the top ``prune_fraction`` channels of one group (step 4) into ``masks``, in place, within the
    ``max_total_fraction`` cap; returns (whether the group was at its cap, ``{"new", "total_pruned", "of"}``)."""
    import torch

    old = torch.cat([masks.get(n, torch.ones_like(scores[n], dtype=torch.float32)) for n in names])
    flat = torch.cat([scores[n].float() for n in names]).masked_fill(old == 0, float("-inf"))
    total = flat.numel()
    budget = math.floor(cfg.max_total_fraction * total) - int((old == 0).sum())
    k = max(0, min(math.ceil(cfg.prune_fraction * total), budget))
    new = old.clone()
    if k:
        new[torch.topk(flat, k).indices] = 0.0
    offset = 0
    for n in names:
        size = scores[n].numel()
        part = new[offset : offset + size]
        offset += size
        if (part == 0).any() or n in masks:
            masks[n] = part.clone()
    return budget <= 0, {"new": k, "total_pruned": int((new == 0).sum()), "of": total}


@register_method
class MANU(UnlearningMethod):
    """Prune the MLP neurons whose activations are most specific to the forget set (no training)."""

    name = "manu"
    config_class = MANUConfig
    uses_retain = True
    trains = False

    def __init__(self, config: MANUConfig | None = None) -> None:
        super().__init__(config)
        self.info: dict[str, Any] = {}

    def attach_adapter(self, model: Any, data: StageRows, parent_dir: Any) -> Any:
        """The parent's adapter (frozen), or at stage 1 an identity LoRA (rank 1, ``lora_B = 0``) on the language
        model, so that every stage dir holds an adapter and loads the same way."""
        from icu_unlearn.models.adapters import continue_stage, lora_model

        if parent_dir is not None:
            return continue_stage(model, parent_dir, trainable=False)
        return lora_model(model, 1, 1.0, 0.0, LM_LORA_TARGETS)

    def output_masks(
        self, model: torch.nn.Module, data: StageRows, parent: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        cfg = self.config
        modules = mlp_modules(model, cfg.last_layers)
        if not modules:
            raise ConfigError("MANU found no MLP modules (fc1/fc2, gate/up/down_proj) in the model")
        scores = neuron_scores(model, modules, data, cfg)
        masks = {k: v.clone().float() for k, v in parent.items()}
        groups: dict[tuple[str, str], list[str]] = {}
        for name, (tower, kind, _) in modules.items():
            if name in scores:
                groups.setdefault((tower, kind), []).append(name)
        self.info = {"pruned": {}, "cap_reached": False}
        capped = []
        for (tower, kind), names in sorted(groups.items()):
            at_cap, self.info["pruned"][f"{tower}.{kind}"] = prune_group(sorted(names), scores, masks, cfg)
            capped.append(at_cap)
        self.info["cap_reached"] = bool(capped) and all(capped)
        if not self.info["cap_reached"]:
            from icu_unlearn.models.masks import check_new_masks

            check_new_masks(masks, parent)  # a stage that prunes nothing new would silently equal its parent
        return masks

    def stage_info(self) -> dict[str, Any]:
        return dict(self.info)
