"""The precision a model is loaded and trained in: ``--dtype float32|bfloat16|float16|auto``.

* ``auto`` (the default): float32 on CPU (half precision is slow there and the tiny model is trained in it),
  the checkpoint's own dtype on an accelerator (float16 for llava-1.5-7b-hf, bfloat16 for Qwen2-VL).
* ``bfloat16`` / ``float16``: the base weights are loaded in that dtype; a training stage runs under the
  Trainer's mixed precision (``bf16=True`` / ``fp16=True``, loss scaling for float16) while the trainable LoRA
  weights stay float32 (PEFT keeps adapter weights in float32 on a half-precision base).

Refused in one line, before anything loads: an unknown name; float16 training on CPU (the Trainer's float16
loss scaling needs a GPU); a full fine-tune (every weight trainable) in half precision, which would train
without float32 master weights — fine-tune a real model with ``--mode lora``.
"""

from __future__ import annotations

from typing import Any

from icu_tasks.errors import ConfigError

_NAMES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16"}
_NAMES |= {"float16": "float16", "fp16": "float16", "half": "float16", "auto": "auto"}
DTYPE_HELP = (
    "float32, bfloat16, float16 or auto (default auto: float32 on CPU, the checkpoint's dtype on GPU)"
)


def dtype_name(dtype: Any) -> str:
    """The canonical name (``float32``, ``bfloat16``, ``float16`` or ``auto``) of a dtype spelling or torch
    dtype, checked without importing torch; anything else is a one-line :class:`ConfigError`."""
    if dtype in (None, ""):
        return "auto"
    name = _NAMES.get(str(dtype).lower().removeprefix("torch."))
    if name is None:
        raise ConfigError(f"unknown dtype {dtype!r} (expected float32, bfloat16, float16 or auto)")
    return name


def check_training_dtype(dtype: Any, device: str | None, *, full_weights: bool = False) -> str:
    """:func:`dtype_name`, refusing what training cannot do: float16 on CPU, half precision when every weight
    is trainable (``full_weights``)."""
    name = dtype_name(dtype)
    if name == "float16" and device == "cpu":
        raise ConfigError(
            "float16 training needs a GPU (its loss scaling); use --dtype bfloat16 or float32 on CPU"
        )
    if full_weights and name in ("bfloat16", "float16"):
        raise ConfigError(
            f"a full fine-tune trains every weight and keeps them in float32; --dtype {name} needs --mode lora"
        )
    return name


def resolve_dtype(dtype: Any, device: str):
    """The torch dtype to load a model in (``auto``: float32 on CPU, ``"auto"`` — the checkpoint's own — on an
    accelerator)."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    name = dtype_name(dtype)
    if name == "auto":
        return torch.float32 if device == "cpu" else "auto"
    return getattr(torch, name)


def trainer_precision(model_dtype: Any, device: str | None) -> dict[str, bool]:
    """The ``TrainingArguments`` mixed-precision flags for a model whose weights are in ``model_dtype``."""
    name = dtype_name(model_dtype)
    if name == "float16" and device == "cpu":
        raise ConfigError(
            "float16 training needs a GPU (its loss scaling); use --dtype bfloat16 or float32 on CPU"
        )
    return {"bf16": name == "bfloat16", "fp16": name == "float16"}


__all__ = ["DTYPE_HELP", "check_training_dtype", "dtype_name", "resolve_dtype", "trainer_precision"]
