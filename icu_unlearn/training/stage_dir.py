"""Stage dirs: atomic writing, the stage.json record, and the guards against silent no-op training.

``RUN/stage_K/`` (layout and record: :mod:`icu_tasks.records.layout`) holds the cumulative PEFT adapter (``adapter_config.json`` + ``adapter_model.safetensors``),
optional ``masks.safetensors`` (inference-time output-channel masks, cumulative), optional method artifacts
(e.g. MMUnlearner's ``saliency.safetensors``) and ``stage.json``. It is written atomically
(:func:`icu_tasks.records.layout.atomic_dir`): a stage dir is complete or absent; an existing one is replaced only
with ``overwrite=True``.

The guards fail loudly where other toolkits silently train nothing: LoRA targets that matched no module, a
stage without trainable parameters, and trainable weights that did not change.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icu_tasks.errors import ConfigError, DataError, StageError
from icu_tasks.records.files import read_record, stamped
from icu_tasks.records.layout import (
    MASKS_FILE,
    STAGE_JSON,
    check_writable,
    stage_dir,
    write_dir_atomically,
    write_json,
)
from icu_tasks.records.provenance import package_versions, short
from icu_unlearn.models import save_masks
from icu_unlearn.models.card import stage_card
from icu_unlearn.models.identity import base_data, check_base_data, model_id, stage_id, stage_matches_base
from icu_unlearn.models.loading import (
    ADAPTER_BIN,
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    check_adapter_files,
    resolve_model_dir,
    same_base,
)
from icu_unlearn.models.precision import dtype_name
from icu_unlearn.training.distributed import world_size


def read_stage(path: str | os.PathLike) -> dict[str, Any]:
    """A complete stage dir's ``stage.json`` (StageError if the dir or the record is missing/unreadable)."""
    path = Path(path)
    record = path / STAGE_JSON
    if not path.is_dir():
        raise StageError(f"stage dir not found: {path}")
    if not record.is_file():
        raise StageError(f"{path} is not a complete stage dir (no {STAGE_JSON})")
    return read_record(record, required=True)


def save_safetensors(tensors: dict[str, Any], path: Path) -> None:
    """Save a dict of tensors as safetensors (contiguous CPU copies)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path))


def write_stage(
    final: Path, model: Any, masks: dict, artifacts: dict, record: dict, *, overwrite: bool = False
) -> Path:
    """Write a stage dir atomically: the PEFT adapter, masks, method artifacts and ``stage.json`` (``record``).

    ``record`` gains the stage's content identity (``stage_id``, :func:`icu_unlearn.models.identity.stage_id`); a real
    stage record (one naming its method) also gets a model card ``README.md`` in place of PEFT's placeholder.
    """

    def fill(tmp: Path) -> None:
        model.save_pretrained(str(tmp))
        if masks:
            save_masks(masks, tmp / MASKS_FILE)
        for name, tensors in artifacts.items():
            save_safetensors(tensors, tmp / name)
        record["stage_id"] = stage_id(tmp)
        if record.get("method"):
            (tmp / "README.md").write_text(stage_card(record, final), encoding="utf-8")
        record["files"] = sorted(p.name for p in tmp.iterdir()) + [STAGE_JSON]
        write_json(tmp / STAGE_JSON, stamped(STAGE_JSON, record))

    return write_dir_atomically(final, fill, overwrite=overwrite)


def data_and_base(data: Any, base: str | os.PathLike) -> dict[str, Any]:
    """The data and base-model identity every stage-like record carries (a stage, an attacked stage)."""
    return {
        "data_dir": str(data.root),
        "data_hash": data.data_hash,
        "base_model": str(Path(base).resolve()),
        "base_model_id": model_id(base),
        "base_data_hash": base_data(base)[0],
    }


def stage_record(
    method: Any,
    k: int,
    data: Any,
    base: str | os.PathLike,
    parent_dir: Path | None,
    parent_record: dict | None,
    model: Any,
    sd: Any,
    *,
    changes: dict,
    masks: dict,
    seconds: float,
    history: list,
) -> dict[str, Any]:
    """The ``stage.json`` record (docs/continual_runs.md, "Reproducibility"): method and config, forget tasks, seed, data
    hash, versions, parent stage, the adapter, which modules changed and by how much, masks, time and the
    loss log."""

    parent = None
    if parent_dir is not None:
        parent = {
            "path": str(parent_dir.resolve()),
            "stage": k - 1,
            "method": (parent_record or {}).get("method"),
            "stage_id": (parent_record or {}).get("stage_id"),
        }
    return {
        "stage": k,
        "method": method.name,
        "config": method.config.to_dict(),
        "forget_tasks": list(sd.task_ids),
        "seed": method.config.seed,
        **data_and_base(data, base),
        "parent": parent,
        "adapter": adapter_summary(model),
        "dtype": dtype_name(model.dtype),
        "examples": {"forget": len(sd.forget), "retain": len(sd.retain) if method.uses_retain else 0},
        "changed_modules": changes,
        "masks": masks,
        "method_info": method.stage_info(),
        "train_seconds": round(seconds, 2),
        "log_history": history,
        "world_size": world_size(),
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def adapter_summary(model: Any) -> dict[str, Any]:
    """The adapter actually trained (LoRA, or MMUnlearner's SHiRA; a continued LoRA keeps its parent's rank)."""
    cfg = model.peft_config["default"]
    targets = cfg.target_modules if isinstance(cfg.target_modules, str) else sorted(cfg.target_modules or [])
    kind = str(getattr(cfg.peft_type, "value", cfg.peft_type))
    return {
        "type": kind,
        "r": cfg.r,
        "lora_alpha": getattr(cfg, "lora_alpha", None),
        "target_modules": targets,
    }


# ----------------------------------------------------------------------------------------------- guards


def snapshot_trainable(model: Any) -> dict[str, Any]:
    """Copies of every trainable parameter (to measure what a stage changed)."""
    snap = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    if not snap:
        raise StageError("the model has no trainable parameters; the stage would not change anything")
    return snap


def _module_of(param_name: str) -> str:
    """``base_model.model.x.q_proj.lora_A.default.weight`` → ``x.q_proj`` (base-model module name)."""
    name = param_name.removeprefix("base_model.model.")
    for marker in (".lora_A.", ".lora_B.", ".lora_embedding_A.", ".lora_embedding_B.", ".shira_weight."):
        if marker in name:
            return name.split(marker)[0]
    return name.rsplit(".", 1)[0]


def weight_changes(model: Any, before: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per module: L2 norm of the change of its trainable weights, and their norm before and after."""
    import torch

    out: dict[str, dict[str, float]] = {}
    params = dict(model.named_parameters())
    for name, old in before.items():
        new = params[name].detach().to(old.device)
        entry = out.setdefault(_module_of(name), {"delta_sq": 0.0, "before_sq": 0.0, "after_sq": 0.0})
        entry["delta_sq"] += float(torch.sum((new.float() - old.float()) ** 2))
        entry["before_sq"] += float(torch.sum(old.float() ** 2))
        entry["after_sq"] += float(torch.sum(new.float() ** 2))
    return {
        module: {
            "delta_norm": v["delta_sq"] ** 0.5,
            "norm_before": v["before_sq"] ** 0.5,
            "norm_after": v["after_sq"] ** 0.5,
        }
        for module, v in sorted(out.items())
    }


def check_changed(changes: dict[str, dict[str, float]], what: str = "stage") -> dict[str, dict[str, float]]:
    """The modules whose weights changed; none → StageError (training ran but moved nothing)."""
    changed = {m: v for m, v in changes.items() if v["delta_norm"] > 0.0}
    if not changed:
        raise StageError(
            f"the {what}'s trainable weights did not change during training (frozen adapter, zero learning rate "
            "or no gradient reaching them); refusing to write a stage that equals its parent"
        )
    return changed


def versions() -> dict[str, str]:
    """Versions of the packages that determine a stage's result."""

    return package_versions("icu-bench", "torch", "transformers", "peft", "accelerate")


def check_parent(parent: Path, k: int, data_hash: str, base: str) -> dict[str, Any]:
    """Validate the parent stage of stage ``k``: complete, stage ``k − 1``, same data and base model.

    Checks only files (``stage.json`` and the adapter's config and weights), so it runs before the base model
    is loaded; that the adapter's shapes fit the model is checked when the stage is loaded. The base model is
    compared by content (``base_model_id``, so a copied run still matches); a record without it (written before
    the field existed) falls back to comparing paths.
    """

    record = read_stage(parent)
    if int(record.get("stage", -1)) != k - 1:
        raise StageError(
            f"{parent} is stage {record.get('stage')}, but stage {k} must start from stage {k - 1}"
        )
    if record.get("data_hash") and data_hash and record["data_hash"] != data_hash:
        raise StageError(
            f"{parent} was trained on other data (data hash {short(record['data_hash'])}, data dir "
            f"{record.get('data_dir')}), not on data hash {short(data_hash)}"
        )
    recorded_base = record.get("base_model")
    if stage_matches_base(parent, base) is None and recorded_base and not same_base(recorded_base, base):
        raise StageError(f"{parent} was trained on base model {recorded_base}, not on {base}")
    if any((parent / name).is_file() for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS, ADAPTER_BIN)):
        check_adapter_files(parent, base)  # before any model is loaded: .bin weights, another base model
    return record


@dataclass
class StageInputs:
    """The validated inputs of one unlearning stage."""

    k: int
    final: Path
    base_dir: Path
    data: Any
    parent_dir: Path | None
    parent_record: dict[str, Any] | None


def check_stage_inputs(
    base: str | os.PathLike,
    data_dir: str | os.PathLike,
    stage: int,
    run_dir: str | os.PathLike,
    *,
    parent: str | os.PathLike | None = None,
    overwrite: bool = False,
    allow_data_mismatch: bool = False,
    dry_run: bool = False,
) -> StageInputs:
    """Validate a stage's inputs; ``dry_run`` skips the output checks and a parent that does not exist yet."""
    from icu_tasks.data.dataset import open_data

    k = int(stage)
    if k < 1:
        raise ConfigError(f"stage must be >= 1 (stage 0 is the vanilla model), got {stage}")
    final = stage_dir(run_dir, k)
    if final.parent.exists() and not final.parent.is_dir():
        raise StageError(f"run dir {final.parent} is a file, not a directory")
    if not dry_run:
        check_writable(final, overwrite)
    if k == 1 and parent is not None:
        raise ConfigError("stage 1 starts from the vanilla model; --from is only for stages >= 2")
    parent_dir = Path(parent) if parent is not None else (stage_dir(run_dir, k - 1) if k > 1 else None)
    base_dir = resolve_model_dir(base)
    data = open_data(data_dir)
    if k not in {int(t) for t in data.task_ids}:
        ids = sorted(int(t) for t in data.task_ids)
        raise DataError(f"forget task {k} does not exist in {data.root} (it has tasks {ids[0]}..{ids[-1]})")
    check_base_data(base_dir, data.data_hash, data.root, allow=allow_data_mismatch)
    parent_record = None
    if parent_dir is not None and not (dry_run and not parent_dir.exists()):
        parent_record = check_parent(parent_dir, k, data.data_hash, str(base))
    return StageInputs(k, final, base_dir, data, parent_dir, parent_record)
