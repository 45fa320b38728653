"""The one reader and writer of a run's JSON records, each stamped with its ``format_version``.

Records: ``finetune.json`` (a vanilla model dir), ``run.json``, ``cost.json``, ``demo.json``,
``stage_K/stage.json``, ``report/report.json`` and a comparison dir's ``compare.json`` — their fields are the TypedDicts of
:mod:`icu_tasks.records.layout`. :func:`write_record` stamps the file's current format version and the icu-bench version that
wrote it; :func:`read_record` accepts a record without one (the first format) or with a version this package knows, and
stops with one line naming the file for a version written by a newer ``icu-bench``.
"""

from __future__ import annotations

import json
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from icu_tasks.errors import StageError
from icu_tasks.records.layout import (
    COMPARE_JSON,
    COST_JSON,
    DEMO_JSON,
    FINETUNE_JSON,
    REPORT_JSON,
    RUN_JSON,
    STAGE_JSON,
    atomic_write_json,
)

#: The key every record carries.
FORMAT_KEY = "format_version"
#: The key naming the icu-bench release that wrote the record (informative: never compared on resume).
WRITER_KEY = "icu_bench_version"
#: The format version this package writes (and the newest it reads), per record file name.
FORMAT_VERSIONS: dict[str, int] = {
    FINETUNE_JSON: 1,
    RUN_JSON: 1,
    COST_JSON: 1,
    DEMO_JSON: 1,
    STAGE_JSON: 1,
    REPORT_JSON: 2,
    COMPARE_JSON: 1,
}


class RecordVersionError(StageError):
    """A record written by a newer ``icu-bench`` (a format version this package does not know)."""


def icu_bench_version() -> str:
    """The installed icu-bench version (``icu-bench --version``, every record's ``icu_bench_version``)."""
    try:
        return version("icu-bench")
    except PackageNotFoundError:  # pragma: no cover - imported from a source tree that was never installed
        return "not installed"


def _version_of(path: Path) -> int:
    try:
        return FORMAT_VERSIONS[path.name]
    except KeyError:
        raise ValueError(f"{path.name} is not a run record ({', '.join(FORMAT_VERSIONS)})") from None


def stamped(path: str | os.PathLike, payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with the record's ``format_version`` and the writer's ``icu_bench_version`` first (a copy)."""
    rest = {k: v for k, v in payload.items() if k not in (FORMAT_KEY, WRITER_KEY)}
    return {FORMAT_KEY: _version_of(Path(path)), WRITER_KEY: icu_bench_version(), **rest}


def write_record(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write a record atomically (temp file + rename), stamped with its format version."""
    return atomic_write_json(path, stamped(path, payload))


def read_record(path: str | os.PathLike, *, required: bool = False) -> dict[str, Any]:
    """A record as a dict; ``{}`` if the file is absent (StageError when ``required``). Unreadable, not a JSON
    object, or a format version newer than this package reads → StageError naming the file."""
    path = Path(path)
    newest = _version_of(path)
    if not path.is_file():
        if required:
            raise StageError(f"{path} not found")
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise StageError(f"unreadable {path}: {type(err).__name__}: {err}") from None
    if not isinstance(record, dict):
        raise StageError(f"unreadable {path}: not a JSON object")
    version = record.get(FORMAT_KEY, 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= newest:
        raise RecordVersionError(
            f"{path} has {FORMAT_KEY} {version!r}; this icu-bench reads {path.name} up to version {newest} "
            "(a newer icu-bench wrote it: upgrade icu-bench)"
        )
    return record
