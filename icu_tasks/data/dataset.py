"""Load and validate an ICU-Bench data dir (``qa.parquet``, ``profiles.parquet``, ``manifest.json``, ``images/``).

``open_data(dir)`` validates the dir and returns an :class:`IcuData` that selects rows by split, view and
forget task; the paraphrase rows (``qa_paraphrase.parquet``, scored only) are kept apart from the core rows.
Every problem a user can cause (missing dir, unreadable parquet, wrong column, duplicate ids, missing images,
overlapping splits or forget tasks, counts that disagree with the manifest) raises a :class:`DataError` whose
message is one line naming the problem (the checks live in :mod:`icu_tasks.data.checks`).
"""

from __future__ import annotations

import hashlib
import numbers
import os
from collections import Counter
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Any

import pyarrow as pa

from icu_tasks.data import checks, schema
from icu_tasks.data.checks import HOW_TO_GENERATE, first_line
from icu_tasks.errors import ConfigError, DataError
from icu_tasks.paths import default_data_dir

#: Where an export (``icu-bench data export-hf``) keeps the data dir itself.
SOURCE_DIR = "source"
RETAIN_PARTS = {"train": ("retain_train",), "eval": ("retain_eval",), "all": ("retain_train", "retain_eval")}


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
        raise DataError(f"image file {path}{where} is not a readable image ({first_line(err)})") from err


def data_hash(root: Path) -> str:
    """sha256 over (relative path, bytes) of the parquet files and every image, in sorted path order.

    The paraphrase and long-form files count when they exist (older data dirs have none, and keep their hash).
    """
    h = hashlib.sha256()
    files = [root / schema.QA_FILE, root / schema.PROFILES_FILE]
    for optional in (schema.LONGFORM_FILE, schema.PARAPHRASE_FILE):
        if (root / optional).is_file():
            files.insert(1, root / optional)
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
    exported = root / SOURCE_DIR
    if not (root / schema.MANIFEST_FILE).exists() and (exported / schema.MANIFEST_FILE).is_file():
        return exported  # an export-hf dir (or a download of one): the data dir inside it
    return root


def _load(root: Path, check_hash: bool) -> tuple[dict, pa.Table, list[dict], dict, list[dict], list[dict]]:
    manifest = checks.read_manifest(root)
    qa_path = root / schema.QA_FILE
    table = checks.read_parquet(qa_path, "QA file")
    checks.check_columns(table, qa_path)
    profiles = checks.read_parquet(root / schema.PROFILES_FILE, "profiles file")
    if "profile_id" not in profiles.schema.names:
        raise DataError(f"{schema.PROFILES_FILE}: column 'profile_id' is missing")
    rows = table.to_pylist()
    dupes = Counter(r["id"] for r in rows)
    for rid, n in dupes.items():
        if n > 1:
            raise DataError(f"duplicate id {rid!r} in {schema.QA_FILE} ({n} rows)")
    for row in rows:
        checks.check_row(row)
    task_ids = checks.check_membership(rows)
    n_profiles = len({r["profile_id"] for r in rows if r["split"] != "utility"})
    checks.check_manifest(manifest, rows, task_ids, n_profiles)
    n_images = checks.check_images(root, rows)
    checks.check_promised_images(root, profiles, manifest)
    paraphrases = checks.load_paraphrases(root, manifest, rows)
    longform = checks.load_longform(root, manifest, rows)
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
        "paraphrase_rows": len(paraphrases),
        "longform_rows": len(longform),
    }
    return manifest, table, rows, summary, paraphrases, longform


def validate(data_dir: str | os.PathLike | None = None, *, check_hash: bool = False) -> dict[str, Any]:
    """Check a data dir and return a summary dict; raise :class:`DataError` (one line) on the first problem.

    Beyond what :func:`open_data` checks, every image must decode (:func:`checks.check_image_files`).
    ``check_hash`` also recomputes the content hash over the parquet files and every image (slower).
    """
    root = _resolve(data_dir)
    summary = _load(root, check_hash)[3]
    summary["images_decoded"] = checks.check_image_files(root)
    return summary


class IcuData:
    """A validated data dir: row selection by split / view / forget task, and image access."""

    def __init__(
        self,
        root: Path,
        manifest: dict,
        table: pa.Table,
        rows: list[dict],
        summary: dict,
        paraphrases: list[dict] | None = None,
        longform: list[dict] | None = None,
    ) -> None:
        self.root, self.manifest, self.table, self.summary = root, manifest, table, summary
        self._rows = rows
        self._paraphrases = list(paraphrases or [])
        self._longform = list(longform or [])

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

    def _select(
        self, rows: list[dict], split: str | None, view: str | None, forget_tasks: int | Iterable[int] | None
    ) -> list[dict]:
        if split is not None and split not in schema.SPLITS:
            raise ConfigError(f"unknown split {split!r}; choose from {list(schema.SPLITS)}")
        if view is not None and view not in schema.VIEWS:
            raise ConfigError(f"unknown view {view!r}; choose from {list(schema.VIEWS)}")
        tasks = self._task_set(forget_tasks)
        return [
            dict(r)
            for r in rows
            if (split is None or r["split"] == split)
            and (view is None or r["view"] == view)
            and (tasks is None or r["forget_task"] in tasks)
        ]

    def rows(
        self,
        split: str | None = None,
        view: str | None = None,
        forget_tasks: int | Iterable[int] | None = None,
    ) -> list[dict]:
        """Core QA rows (dicts with the ``schema.QA_SCHEMA`` columns, file order) matching every given filter.

        Every split, ``holdout`` included; never the paraphrase rows (see :meth:`paraphrases`).
        """
        return self._select(self._rows, split, view, forget_tasks)

    def paraphrases(
        self,
        split: str | None = None,
        view: str | None = None,
        forget_tasks: int | Iterable[int] | None = None,
    ) -> list[dict]:
        """Paraphrase rows (``schema.PARAPHRASE_SCHEMA`` columns) matching every filter: scored, never trained.

        Empty for a data dir without a paraphrase file (format 1).
        """
        return self._select(self._paraphrases, split, view, forget_tasks)

    def longform(
        self, split: str | None = None, forget_tasks: int | Iterable[int] | None = None
    ) -> list[dict]:
        """Long-form rows (``schema.LONGFORM_SCHEMA`` columns; one per profile) matching every filter.

        Trained by the fine-tune (unless disabled), scored by the ``icu_longform`` tasks, never part of an
        unlearning stage's forget set or of the stopping rule. Empty for a data dir without the file.
        """
        return self._select(self._longform, split, None, forget_tasks)

    def forget(self, task_or_tasks: int | Iterable[int], view: str | None = None) -> list[dict]:
        """Rows of one forget task (an int) or of several (an iterable of ints)."""
        return self.rows(split="forget", view=view, forget_tasks=task_or_tasks)

    def retain(self, part: str = "eval", view: str | None = None) -> list[dict]:
        """Retain rows: ``eval`` (scored only), ``train`` (what a retain loss may train on) or ``all``."""
        if part not in RETAIN_PARTS:
            raise ConfigError(f"unknown retain part {part!r}; choose from {list(RETAIN_PARTS)}")
        return [r for s in RETAIN_PARTS[part] for r in self.rows(split=s, view=view)]

    def holdout(self, view: str | None = None) -> list[dict]:
        """Holdout rows: profiles the vanilla model never sees (the base rate; never trained, only scored)."""
        return self.rows(split=schema.HOLDOUT, view=view)

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
        *,
        paraphrase: bool = False,
        longform: bool = False,
    ):
        """The selected rows as a ``datasets.Dataset`` with the ``schema.QA_SCHEMA`` features.

        ``paraphrase=True`` selects the paraphrase rows instead (``schema.PARAPHRASE_SCHEMA`` features),
        ``longform=True`` the long-form rows (``schema.LONGFORM_SCHEMA``; ``view`` must be None or ``qa``).
        """
        from datasets import Dataset

        if longform:
            rows = self._select(self._longform, split, view, forget_tasks)
            return Dataset(_in_memory(pa.Table.from_pylist(rows, schema=schema.LONGFORM_SCHEMA)))
        if paraphrase:
            rows = self.paraphrases(split=split, view=view, forget_tasks=forget_tasks)
            return Dataset(_in_memory(pa.Table.from_pylist(rows, schema=schema.PARAPHRASE_SCHEMA)))
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
    manifest, table, rows, summary, paraphrases, longform = _load(root, check_hash)
    return IcuData(root, manifest, table, rows, summary, paraphrases, longform)
