"""Load and validate an ICU-Bench data dir (``qa.parquet``, ``profiles.parquet``, ``manifest.json``, ``images/``).

``open_data(dir)`` validates the dir and returns an :class:`IcuData` that selects rows by split, view and
forget task. Every problem a user can cause (missing dir, unreadable parquet, wrong column, duplicate ids,
missing images, overlapping or empty forget tasks, counts that disagree with the manifest) raises a
:class:`DataError` whose message is one line naming the problem.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
from collections import Counter
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from icu_tasks.data import schema
from icu_tasks.errors import ConfigError, DataError
from icu_tasks.paths import default_data_dir

HOW_TO_GENERATE = "generate one with `icu-bench data generate --out DIR`"
RETAIN_PARTS = {"train": ("retain_train",), "eval": ("retain_eval",), "all": ("retain_train", "retain_eval")}


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def read_rgb(path: str | Path, root: str | Path | None = None):
    """The image at ``path`` (relative to ``root`` when given) as an RGB ``PIL.Image``, file closed after
    loading. The one image reader of the benchmark (lmms-eval docs and training examples alike): a missing or
    unreadable file is a :class:`DataError` naming it.
    """
    from PIL import Image, UnidentifiedImageError

    full = Path(root) / path if root is not None else Path(path)
    try:
        with Image.open(full) as img:
            return img.convert("RGB")
    except FileNotFoundError as err:
        where = f" from {root}" if root is not None else ""
        raise DataError(f"image file {path} is missing{where}") from err
    except (OSError, UnidentifiedImageError) as err:
        where = f" in {root}" if root is not None else ""
        raise DataError(f"image file {path}{where} is not a readable image ({_first_line(err)})") from err


def _read_manifest(root: Path) -> dict:
    path = root / schema.MANIFEST_FILE
    if not path.is_file():
        raise DataError(f"{root} has no {schema.MANIFEST_FILE}: not an ICU-Bench data dir; {HOW_TO_GENERATE}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path} is not valid JSON ({_first_line(err)})") from err
    if not isinstance(manifest, dict):
        raise DataError(f"{path} must hold a JSON object")
    for key in ("seed", "scale", "counts", "data_hash"):
        if key not in manifest:
            raise DataError(f"{path} lacks the key {key!r}")
    return manifest


def _read_parquet(path: Path, what: str) -> pa.Table:
    if not path.is_file():
        raise DataError(f"{what} {path} is missing")
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as err:
        raise DataError(f"{what} {path} is not a readable parquet file ({_first_line(err)})") from err


def _check_columns(table: pa.Table, path: Path) -> None:
    expected = schema.QA_SCHEMA
    for f in expected:
        if f.name not in table.schema.names:
            raise DataError(f"{path.name}: column {f.name!r} is missing")
        actual = table.schema.field(f.name).type
        if actual != f.type:
            raise DataError(f"{path.name}: column {f.name!r} has type {actual}, expected {f.type}")
    extra = [n for n in table.schema.names if n not in expected.names]
    if extra:
        raise DataError(f"{path.name}: unexpected column {extra[0]!r} (expected exactly {expected.names})")
    for f in expected:
        if f.name != "image" and table.column(f.name).null_count:
            raise DataError(
                f"{path.name}: column {f.name!r} has {table.column(f.name).null_count} null values"
            )


def _check_row(row: dict) -> None:
    rid = row["id"]
    for col, allowed in (("domain", schema.DOMAINS), ("view", schema.VIEWS), ("split", schema.SPLITS)):
        if row[col] not in allowed:
            raise DataError(f"row {rid!r} has unknown {col} {row[col]!r} (expected one of {list(allowed)})")
    if (row["view"] == "vqa") != (row["image"] is not None):
        raise DataError(
            f"row {rid!r} ({row['view']} view) "
            + ("has no image" if row["view"] == "vqa" else "has an image")
        )
    if (row["split"] == "forget") != (row["forget_task"] >= 1) or row["forget_task"] < 0:
        raise DataError(f"row {rid!r} has split {row['split']!r} but forget_task {row['forget_task']}")
    if len(row["choices"]) != schema.N_CHOICES or len(set(row["choices"])) != schema.N_CHOICES:
        raise DataError(
            f"row {rid!r} has {len(set(row['choices']))} distinct choices, expected {schema.N_CHOICES}"
        )
    if row["answer"] not in row["choices"]:
        raise DataError(f"row {rid!r}: its answer {row['answer']!r} is not among its choices")


def _check_membership(rows: list[dict]) -> list[int]:
    """Each profile sits in exactly one split / forget task; returns the sorted forget task ids."""
    home: dict[str, tuple[str, int]] = {}
    for row in rows:
        if row["split"] == "utility":
            continue
        where = (row["split"], row["forget_task"])
        seen = home.setdefault(row["profile_id"], where)
        if seen != where:
            (s1, t1), (s2, t2) = sorted([seen, where])
            if s1 == s2 == "forget":
                raise DataError(
                    f"forget tasks {t1} and {t2} overlap: profile {row['profile_id']!r} is in both"
                )
            a = f"forget task {t1}" if s1 == "forget" else s1
            b = f"forget task {t2}" if s2 == "forget" else s2
            raise DataError(f"profile {row['profile_id']!r} is in both {a} and {b}")
    return sorted({t for s, t in home.values() if s == "forget"})


def _check_images(root: Path, rows: list[dict]) -> int:
    images: dict[str, str] = {}
    for row in rows:
        if row["image"] is not None:
            images.setdefault(row["image"], row["id"])
    for rel, rid in images.items():
        parts = rel.replace("\\", "/").split("/")
        if os.path.isabs(rel) or ".." in parts:
            raise DataError(f"row {rid!r}: image path {rel!r} must be relative and inside the data dir")
        if not os.path.isfile(os.path.join(root, rel)):
            raise DataError(f"image file {rel} (row {rid!r}) is missing from {root}")
    return len(images)


def _check_promised_images(root: Path, profiles: pa.Table, manifest: dict) -> None:
    """Every image ``profiles.parquet`` lists (full layouts and utility specimens too) must exist.

    The QA rows reference only the masked views; the full layouts are part of the data set (and of its
    hash) as well, so a missing one is a damaged data dir even without ``--hash``. The number of listed
    images must be the manifest's ``counts.images + counts.utility_images`` when the manifest has them.
    """
    if "images" not in profiles.schema.names:
        raise DataError(f"{schema.PROFILES_FILE}: column 'images' is missing")
    listed = {rel for images in profiles.column("images").to_pylist() for rel in images or []}
    counts = manifest.get("counts") if isinstance(manifest.get("counts"), dict) else {}
    promised = [counts.get("images"), counts.get("utility_images")]
    if all(isinstance(n, int) for n in promised) and len(listed) != sum(promised):
        raise DataError(
            f"{schema.PROFILES_FILE} lists {len(listed)} images, the manifest promises {sum(promised)} "
            f"({promised[0]} documents + {promised[1]} utility specimens)"
        )
    for rel in sorted(listed):
        parts = rel.replace("\\", "/").split("/")
        if os.path.isabs(rel) or ".." in parts:
            raise DataError(
                f"{schema.PROFILES_FILE}: image path {rel!r} must be relative and inside the data dir"
            )
        if not os.path.isfile(os.path.join(root, rel)):
            raise DataError(f"image file {rel} (listed in {schema.PROFILES_FILE}) is missing from {root}")


def _check_manifest(manifest: dict, rows: list[dict], task_ids: list[int], n_profiles: int) -> None:
    counts = manifest["counts"]
    n_tasks = manifest["scale"].get("tasks") if isinstance(manifest["scale"], dict) else None
    if not isinstance(counts, dict) or not isinstance(n_tasks, int):
        raise DataError("manifest.json: 'counts' and 'scale.tasks' are malformed")
    expected = list(range(1, n_tasks + 1))
    for k in expected:
        if k not in task_ids:
            raise DataError(f"forget task {k} has no rows (the manifest lists tasks 1..{n_tasks})")
    extra = [k for k in task_ids if k not in expected]
    if extra:
        raise DataError(f"forget task {extra[0]} is not in the manifest (which lists tasks 1..{n_tasks})")
    by_split = Counter(r["split"] for r in rows)
    actual = {"rows_total": len(rows), "profiles": n_profiles, "forget_tasks": len(task_ids)}
    actual.update({f"rows_by_split.{s}": by_split.get(s, 0) for s in schema.SPLITS})
    claimed = {k: counts.get(k) for k in ("rows_total", "profiles", "forget_tasks")}
    claimed.update({f"rows_by_split.{s}": (counts.get("rows_by_split") or {}).get(s) for s in schema.SPLITS})
    for key, value in actual.items():
        if claimed[key] != value:
            raise DataError(
                f"manifest count mismatch: manifest says {key} = {claimed[key]}, the data has {value}"
            )


def data_hash(root: Path) -> str:
    """sha256 over (relative path, bytes) of the parquet files and every image, in sorted path order."""
    h = hashlib.sha256()
    files = [root / schema.QA_FILE, root / schema.PROFILES_FILE]
    files += sorted((root / schema.IMAGES_DIR).rglob("*.png"), key=lambda p: p.relative_to(root).as_posix())
    for path in files:
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        with open(path, "rb") as fh:
            h.update(hashlib.sha256(fh.read()).digest())
    return h.hexdigest()


def _resolve(data_dir: str | os.PathLike | None) -> Path:
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if not root.exists():
        raise DataError(f"data dir {root} does not exist; {HOW_TO_GENERATE}")
    if not root.is_dir():
        raise DataError(f"data dir {root} is a file, not a directory")
    return root


def _load(root: Path, check_hash: bool) -> tuple[dict, pa.Table, list[dict], dict]:
    manifest = _read_manifest(root)
    qa_path = root / schema.QA_FILE
    table = _read_parquet(qa_path, "QA file")
    _check_columns(table, qa_path)
    profiles = _read_parquet(root / schema.PROFILES_FILE, "profiles file")
    if "profile_id" not in profiles.schema.names:
        raise DataError(f"{schema.PROFILES_FILE}: column 'profile_id' is missing")
    rows = table.to_pylist()
    dupes = Counter(r["id"] for r in rows)
    for rid, n in dupes.items():
        if n > 1:
            raise DataError(f"duplicate id {rid!r} in {schema.QA_FILE} ({n} rows)")
    for row in rows:
        _check_row(row)
    task_ids = _check_membership(rows)
    n_profiles = len({r["profile_id"] for r in rows if r["split"] != "utility"})
    _check_manifest(manifest, rows, task_ids, n_profiles)
    n_images = _check_images(root, rows)
    _check_promised_images(root, profiles, manifest)
    if check_hash:
        actual = data_hash(root)
        if actual != manifest["data_hash"]:
            raise DataError(
                f"data hash mismatch: manifest says {manifest['data_hash'][:12]}..., the files hash to "
                f"{actual[:12]}... (the data changed after generation)"
            )
    summary = {
        "root": str(root),
        "data_hash": manifest["data_hash"],
        "hash_checked": check_hash,
        "seed": manifest["seed"],
        "scale": manifest["scale"],
        "image_size": manifest.get("image_size"),
        "profiles": n_profiles,
        "rows": len(rows),
        "rows_by_split": {s: sum(r["split"] == s for r in rows) for s in schema.SPLITS},
        "rows_by_view": {v: sum(r["view"] == v for r in rows) for v in schema.VIEWS},
        "forget_tasks": len(task_ids),
        "images_referenced": n_images,
    }
    return manifest, table, rows, summary


def validate(data_dir: str | os.PathLike | None = None, *, check_hash: bool = False) -> dict[str, Any]:
    """Check a data dir and return a summary dict; raise :class:`DataError` (one line) on the first problem.

    ``check_hash`` also recomputes the content hash over the parquet files and every image (slower).
    """
    return _load(_resolve(data_dir), check_hash)[3]


class IcuData:
    """A validated data dir: row selection by split / view / forget task, and image access."""

    def __init__(self, root: Path, manifest: dict, table: pa.Table, rows: list[dict], summary: dict) -> None:
        self.root, self.manifest, self.table, self.summary = root, manifest, table, summary
        self._rows = rows

    @property
    def data_hash(self) -> str:
        """The generator's content hash recorded in the manifest."""
        return self.manifest["data_hash"]

    @cached_property
    def task_ids(self) -> tuple[int, ...]:
        """The forget task ids, ascending (1..T)."""
        return tuple(sorted({r["forget_task"] for r in self._rows if r["split"] == "forget"}))

    def _task_set(self, tasks: int | Iterable[int] | None) -> set[int] | None:
        if tasks is None:
            return None
        ids = [tasks] if isinstance(tasks, numbers.Integral) else list(tasks)
        for t in ids:
            if isinstance(t, bool) or not isinstance(t, numbers.Integral) or int(t) not in self.task_ids:
                raise ConfigError(
                    f"forget task {t!r} does not exist; this data has tasks 1..{len(self.task_ids)}"
                )
        return {int(t) for t in ids}

    def rows(
        self,
        split: str | None = None,
        view: str | None = None,
        forget_tasks: int | Iterable[int] | None = None,
    ) -> list[dict]:
        """QA rows (dicts with the ``schema.QA_SCHEMA`` columns, file order) matching every given filter."""
        if split is not None and split not in schema.SPLITS:
            raise ConfigError(f"unknown split {split!r}; choose from {list(schema.SPLITS)}")
        if view is not None and view not in schema.VIEWS:
            raise ConfigError(f"unknown view {view!r}; choose from {list(schema.VIEWS)}")
        tasks = self._task_set(forget_tasks)
        return [
            dict(r)
            for r in self._rows
            if (split is None or r["split"] == split)
            and (view is None or r["view"] == view)
            and (tasks is None or r["forget_task"] in tasks)
        ]

    def forget(self, task_or_tasks: int | Iterable[int], view: str | None = None) -> list[dict]:
        """Rows of one forget task (an int) or of several (an iterable of ints)."""
        return self.rows(split="forget", view=view, forget_tasks=task_or_tasks)

    def retain(self, part: str = "eval", view: str | None = None) -> list[dict]:
        """Retain rows: ``eval`` (scored only), ``train`` (what a retain loss may train on) or ``all``."""
        if part not in RETAIN_PARTS:
            raise ConfigError(f"unknown retain part {part!r}; choose from {list(RETAIN_PARTS)}")
        return [r for s in RETAIN_PARTS[part] for r in self.rows(split=s, view=view)]

    def utility(self, view: str | None = None) -> list[dict]:
        """Utility rows (specimen documents and public facts)."""
        return self.rows(split="utility", view=view)

    def image_path(self, rel: str) -> Path:
        """Absolute path of an image given its path relative to the data dir (as stored in ``image``)."""
        return self.root / rel

    def load_image(self, rel: str):
        """The image at ``rel`` as an RGB ``PIL.Image`` (file closed after loading); see :func:`read_rgb`."""
        return read_rgb(rel, self.root)

    def dataset(
        self,
        split: str | None = None,
        view: str | None = None,
        forget_tasks: int | Iterable[int] | None = None,
    ):
        """The selected rows as a ``datasets.Dataset`` with the ``schema.QA_SCHEMA`` features."""
        from datasets import Dataset

        rows = self.rows(split=split, view=view, forget_tasks=forget_tasks)
        return Dataset(_in_memory(pa.Table.from_pylist(rows, schema=schema.QA_SCHEMA)))

    def __repr__(self) -> str:
        return f"IcuData(root={str(self.root)!r}, rows={len(self._rows)}, tasks={len(self.task_ids)})"


def _in_memory(table: pa.Table):
    from datasets.table import InMemoryTable

    return InMemoryTable(table)


def open_data(data_dir: str | os.PathLike | None = None, *, check_hash: bool = False) -> IcuData:
    """Validate ``data_dir`` (default: ``$ICU_DATA_DIR`` or ``./data/icu``) and return an :class:`IcuData`."""
    root = _resolve(data_dir)
    manifest, table, rows, summary = _load(root, check_hash)
    return IcuData(root, manifest, table, rows, summary)
