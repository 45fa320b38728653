"""Inference-time output-channel masks: read, write, apply (forward hooks) and check them.

A stage dir's ``masks.safetensors`` maps a module name, as in the *base* model's ``named_modules()``, to a float
0/1 tensor of shape ``[out_features]``. A mask multiplies that module's output through a forward hook; on a
LoRA-wrapped module the hook sits on the wrapper, so the base output and the LoRA delta are both masked. Masks
of a run accumulate: stage *k*'s file holds the union of every stage's pruned channels so far.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from icu_tasks.errors import ConfigError, StageError
from icu_tasks.records.layout import MASKS_FILE, atomic_write

_HOOKS_ATTR = "_icu_mask_hooks"


def base_of(model: Any) -> Any:
    """The model under a PEFT wrapper (the model itself when it has none)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def read_masks(stage_dir: str | os.PathLike) -> dict:
    """The stage's masks (``{}`` when it has no ``masks.safetensors``), as float CPU tensors."""
    from safetensors.torch import load_file

    path = Path(stage_dir) / MASKS_FILE
    if not path.is_file():
        return {}
    try:
        masks = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types
        raise StageError(f"unreadable masks file {path}: {err}") from err
    for name, mask in masks.items():
        if mask.ndim != 1 or not bool(((mask == 0) | (mask == 1)).all()):
            raise StageError(f"mask {name!r} in {path} must be a 1-D tensor of 0/1 values")
    return {name: mask.float() for name, mask in masks.items()}


def save_masks(masks: dict, path: str | os.PathLike) -> None:
    """Write masks (module name → 0/1 vector) as safetensors, atomically (temp file + rename)."""
    from safetensors.torch import save_file

    for name, mask in masks.items():
        if mask.ndim != 1 or not bool(((mask == 0) | (mask == 1)).all()):
            raise ConfigError(f"mask {name!r} must be a 1-D tensor of 0/1 values")
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in masks.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))


def _out_features(module) -> int | None:
    for attr in ("out_features",):
        if isinstance(getattr(module, attr, None), int):
            return getattr(module, attr)
    weight = getattr(module, "weight", None)
    return int(weight.shape[0]) if weight is not None and weight.ndim >= 1 else None


def apply_masks(model, masks: dict) -> list:
    """Multiply each named module's output by its mask (forward hooks); returns the hook handles.

    Names are the base model's module names; on a ``PeftModel`` they resolve inside its base model, so apply
    masks *after* the adapter is attached. Hooks are also remembered on the model (see :func:`remove_masks`).
    """
    base = base_of(model)
    modules = dict(base.named_modules())
    handles = []
    for name, mask in masks.items():
        module = modules.get(name)
        if module is None:
            raise StageError(f"mask names module {name!r}, which the model does not have")
        width = _out_features(module)
        if width is not None and width != mask.numel():
            raise StageError(f"mask for {name!r} has {mask.numel()} entries, the module has {width} outputs")

        def hook(_module, _inputs, output, _mask=mask):
            return output * _mask.to(device=output.device, dtype=output.dtype)

        handles.append(module.register_forward_hook(hook))
    setattr(model, _HOOKS_ATTR, [*getattr(model, _HOOKS_ATTR, []), *handles])
    return handles


def remove_masks(model) -> None:
    """Remove every mask hook :func:`apply_masks` put on ``model``."""
    for handle in getattr(model, _HOOKS_ATTR, []):
        handle.remove()
    setattr(model, _HOOKS_ATTR, [])


def check_new_masks(masks: dict, parent: dict) -> None:
    """A training-free stage must prune something new, or it silently equals its parent."""
    zeros = sum(int((m == 0).sum()) for m in masks.values())
    parent_zeros = sum(int((m == 0).sum()) for m in parent.values())
    if zeros <= parent_zeros:
        raise StageError(
            "the stage pruned no new channel (the cap is reached or no candidate module was found)"
        )


def mask_summary(masks: dict, parent: dict) -> dict[str, Any]:
    """Pruned channels in total, new in this stage, and per module (for stage.json)."""
    if not masks:
        return {}
    per_module = {n: int((m == 0).sum()) for n, m in sorted(masks.items())}
    parent_total = sum(int((m == 0).sum()) for m in parent.values())
    total = sum(per_module.values())
    return {
        "file": MASKS_FILE,
        "pruned_total": total,
        "pruned_new": total - parent_total,
        "pruned_per_module": per_module,
    }
