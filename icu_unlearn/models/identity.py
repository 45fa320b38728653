"""Content identity of base models and stages, and the checks that use it before any model is loaded.

* A base model dir is identified by its ``model_id``: sha256 over ``config.json`` and its weight files (name
  and sha256 of the bytes). ``icu-bench finetune`` computes it once and stores it in ``finetune.json``; a model
  dir without that record (built elsewhere, or fine-tuned before the field existed) is hashed when needed and
  the result is cached per process.
* A stage dir is identified by its ``stage_id``: sha256 over its safetensors files (adapter, masks, method
  artifacts) and its ``adapter_config.json`` without the base model's path. ``stage.json`` stores it together
  with the ``base_model_id`` and ``data_hash`` the stage was made from.

Copying or moving a vanilla model and a run dir changes no identity, so a copied run scores and resumes as
before; other weights or other data do change it. Records written before these fields existed hold only paths:
for them the old path comparison is used. Nothing here imports torch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from icu_tasks.errors import ConfigError, StageError
from icu_tasks.records.files import read_record
from icu_tasks.records.layout import FINETUNE_JSON, STAGE_JSON
from icu_tasks.records.provenance import check_same_data, short

MODEL_ID_KEY = "model_id"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json")
_BLOCK = 1 << 20


#: Weights larger than this show a hashing progress bar.
_BAR_BYTES = 1 << 30


def file_digest(path: Path, progress: Any = None) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks (``progress``: a tqdm bar advanced by the bytes read)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            h.update(block)
            if progress is not None:
                progress.update(len(block))
    return h.hexdigest()


def _digest_of(parts: list[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for name, digest in parts:
        h.update(name.encode() + b"\0" + digest.encode() + b"\n")
    return h.hexdigest()


def _weight_files(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))


def compute_model_id(root: str | os.PathLike) -> str:
    """sha256 over ``config.json`` and every weight file of a model dir (reads every weight byte once)."""
    root = Path(root)
    if not (root / "config.json").is_file():
        raise ConfigError(f"not a model dir (no config.json): {root}")
    from tqdm.auto import tqdm

    files = [root / "config.json", *_weight_files(root)]
    total = sum(p.stat().st_size for p in files)
    # a bar for real models only (over 1 GiB), on a terminal only, off under --quiet (TQDM_DISABLE)
    show = None if total > _BAR_BYTES else True
    with tqdm(
        total=total, unit="B", unit_scale=True, desc="hashing weights", disable=show, leave=False
    ) as bar:
        return _digest_of([(p.name, file_digest(p, bar)) for p in files])


def _stat_key(root: Path) -> tuple:
    stats = []
    for p in [root / "config.json", *_weight_files(root)]:
        st = p.stat()
        stats.append((p.name, st.st_size, st.st_mtime_ns))
    return (str(root.resolve()), tuple(stats))


@functools.lru_cache(maxsize=16)
def _cached_model_id(key: tuple) -> str:
    return compute_model_id(Path(key[0]))


def model_id(root: str | os.PathLike) -> str:
    """The content identity of a model dir: ``finetune.json``'s ``model_id``, else computed (and cached)."""
    root = Path(root)
    recorded = read_record(root / FINETUNE_JSON).get(MODEL_ID_KEY)
    if isinstance(recorded, str) and recorded:
        return recorded
    if not (root / "config.json").is_file():
        raise ConfigError(f"not a model dir (no config.json): {root}")
    return _cached_model_id(_stat_key(root))


def stage_id(stage_dir: str | os.PathLike) -> str:
    """The content identity of a stage dir: its safetensors files and its adapter config minus the base path."""
    stage = Path(stage_dir)
    parts = [(p.name, file_digest(p)) for p in sorted(stage.glob("*.safetensors")) if p.is_file()]
    config_path = stage / "adapter_config.json"
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise StageError(f"unreadable {config_path}: {err}") from err
        if isinstance(config, dict):
            config = {k: v for k, v in config.items() if k not in ("base_model_name_or_path", "revision")}
        canonical = json.dumps(config, sort_keys=True, default=str)
        parts.append((config_path.name, hashlib.sha256(canonical.encode()).hexdigest()))
    return _digest_of(parts)


def base_data(base: str | os.PathLike) -> tuple[str | None, str | None]:
    """``(data_hash, data_dir)`` the vanilla model was fine-tuned on (``finetune.json``; Nones without it)."""
    record = read_record(Path(base) / FINETUNE_JSON)
    return record.get("data_hash") or None, record.get("data_dir") or None


def check_base_data(base: str | os.PathLike, data_hash: str, data_dir: Any, *, allow: bool = False) -> None:
    """Refuse data other than what the vanilla model ``base`` was fine-tuned on (DataError naming both)."""
    expected, expected_dir = base_data(base)
    check_same_data(f"the vanilla model {base}", expected, expected_dir, data_hash, data_dir, allow=allow)


def check_stage_data(
    stage_dir: str | os.PathLike, data_hash: str, data_dir: Any, *, allow: bool = False
) -> None:
    """Refuse data other than what the stage was trained on (its ``stage.json``; no record, no check)."""
    record = read_record(Path(stage_dir) / STAGE_JSON)
    what = f"stage {stage_dir}"
    check_same_data(what, record.get("data_hash"), record.get("data_dir"), data_hash, data_dir, allow=allow)


def stage_matches_base(stage_dir: str | os.PathLike, base: str | os.PathLike) -> bool | None:
    """Whether the stage was trained on ``base``, by content; ``None`` when the stage recorded no base id.

    Raises StageError (naming both model ids and paths) when the recorded id differs from ``base``'s.
    """
    stage = Path(stage_dir)
    record = read_record(stage / STAGE_JSON)
    recorded = record.get("base_model_id")
    if not recorded:
        return None
    actual = model_id(base)
    if actual != recorded:
        raise StageError(
            f"{stage} was trained on base model {short(recorded)} ({record.get('base_model', 'unknown path')}), "
            f"not on {base} (model {short(actual)})"
        )
    return True
