"""Weight-only quantization of a scored model (the quantization probe), with torchao.

The probe asks whether an unlearning update survives the rounding of deployment: small weight changes can round
back to the vanilla model's values. :func:`merge_and_quantize` takes a base model with a stage applied, merges
the stage's PEFT adapter into the weights (``merge_and_unload``), quantizes every ``nn.Linear`` of the language
model with torchao's ``quantize_`` and puts the stage's output masks back as forward hooks. The vision tower,
the projector and the output head stay in full precision: the stages change the language model only.

Schemes (:data:`SCHEMES`):

* ``int8`` — torchao ``Int8WeightOnlyConfig``: symmetric int8 per output channel;
* ``int4`` — torchao ``IntxWeightOnlyConfig(int4, PerGroup(128))``: round-to-nearest int4 in groups of 128
  input features (the GPTQ/AWQ group size, without their calibration);
* ``nf4`` — torchao's NF4 (QLoRA's 4-bit NormalFloat, blocks of 64 with double-quantized scales;
  ``torchao.prototype``).

torchao runs these on CPU and CUDA alike, in place on a loaded model (no save and reload), and keeps the
activations in full precision (weight-only). A quantized model is for scoring only.
"""

from __future__ import annotations

from typing import Any

import torch
from torchao.prototype._nf4tensor_api import NF4WeightOnlyConfig
from torchao.quantization import Int8WeightOnlyConfig, IntxWeightOnlyConfig, quantize_
from torchao.quantization.granularity import PerGroup

from icu_tasks.errors import ConfigError
from icu_tasks.records.layout import QUANT_PROBES
from icu_unlearn.models import apply_masks, read_masks, remove_masks

#: Input features per int4 group.
INT4_GROUP = 128
#: The accepted ``quantize=`` values.
SCHEMES: tuple[str, ...] = QUANT_PROBES
#: Modules quantized: ``nn.Linear`` layers whose name contains this (LLaVA-HF and Qwen2-VL language models).
LANGUAGE_MODEL = "language_model"


def check_scheme(scheme: Any) -> str:
    """The scheme name, lower-cased; a ConfigError naming the accepted ones for anything else."""
    name = str(scheme).strip().lower()
    if name not in SCHEMES:
        raise ConfigError(f"quantize must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    return name


def _config(scheme: str) -> Any:
    if scheme == "int8":
        return Int8WeightOnlyConfig()
    if scheme == "int4":
        return IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(INT4_GROUP))
    return NF4WeightOnlyConfig()


def _is_language_linear(module: torch.nn.Module, name: str) -> bool:
    return isinstance(module, torch.nn.Linear) and LANGUAGE_MODEL in name.split(".")


def quantize_language_model(model: torch.nn.Module, scheme: str) -> torch.nn.Module:
    """Quantize ``model``'s language-model ``nn.Linear`` weights in place with ``scheme``; returns ``model``.

    A model with no such layer (another architecture's naming) is a ConfigError rather than a silent no-op.
    """
    scheme = check_scheme(scheme)
    targets = [n for n, m in model.named_modules() if _is_language_linear(m, n)]
    if not targets:
        raise ConfigError(f"quantize: the model has no nn.Linear under a '{LANGUAGE_MODEL}' module")
    if scheme == "int4":
        odd = [n for n in targets if model.get_submodule(n).in_features % INT4_GROUP]
        if odd:
            raise ConfigError(f"quantize=int4: {odd[0]} has in_features not divisible by {INT4_GROUP}")
    quantize_(model, _config(scheme), filter_fn=_is_language_linear)
    return model


def merge_and_quantize(model: Any, scheme: str, stage_dir: str | None = None) -> torch.nn.Module:
    """The scored model with its stage adapter merged and the language model weight-quantized.

    ``model`` is a base model with ``stage_dir`` applied (:func:`icu_unlearn.models.loading.load_stage`) or a
    plain base model (``stage_dir`` None). The stage's masks are removed before the merge and applied again to
    the quantized modules (same names), so a masked channel stays masked.
    """
    scheme = check_scheme(scheme)
    remove_masks(model)
    merge = getattr(model, "merge_and_unload", None)
    if callable(merge):
        model = merge()
    model = quantize_language_model(model, scheme).eval()
    masks = read_masks(stage_dir) if stage_dir else {}
    if masks:
        apply_masks(model, masks)
    return model
