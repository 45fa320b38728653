"""The adapters a stage trains: a fresh LoRA adapter on the language model, or the parent stage's continued.

Stage adapters are never merged: a stage dir holds the cumulative adapter, which loads on the vanilla model
with ``PeftModel.from_pretrained``. A LoRA target pattern that matches no module is a ConfigError (PEFT's own
error would otherwise surface mid-run, or a silent no-op elsewhere).
"""

from __future__ import annotations

import os
from typing import Any

from icu_tasks.errors import ConfigError, StageError
from icu_unlearn.models import load_stage
from icu_unlearn.models.loading import quiet_transformers


def lora_model(model: Any, r: int, alpha: float, dropout: float, targets: str) -> Any:
    """Wrap ``model`` with a fresh LoRA adapter; a pattern that matches nothing is a ConfigError."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none")
    try:
        with quiet_transformers():
            model = get_peft_model(model, config)
    except ValueError as err:
        raise ConfigError(f"LoRA target pattern {targets!r} matched no module of the model ({err})") from None
    check_lora_targets(model, targets)
    return model


def continue_stage(model: Any, parent_dir: str | os.PathLike, *, trainable: bool) -> Any:
    """The base ``model`` with the parent stage's adapter (and masks) applied; it must have an adapter."""

    with quiet_transformers():
        model = load_stage(model, parent_dir, trainable=trainable)
    if not hasattr(model, "peft_config"):
        raise StageError(f"parent stage {parent_dir} has no PEFT adapter to continue")
    return model


def lora_module_names(model: Any) -> list[str]:
    """Names of the modules that carry a LoRA adapter (``lora_A`` children)."""
    return sorted(n for n, m in model.named_modules() if hasattr(m, "lora_A") and len(m.lora_A) > 0)


def check_lora_targets(model: Any, pattern: str) -> list[str]:
    """The LoRA-wrapped modules; none → ConfigError naming the pattern (a silent no-op elsewhere)."""
    names = lora_module_names(model)
    if not names:
        raise ConfigError(
            f"LoRA target pattern {pattern!r} matched no module of the model; nothing would train"
        )
    return names
