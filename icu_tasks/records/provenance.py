"""Which data set an artefact was made with, and the one-line refusal when two artefacts disagree.

Every artefact records the ``data_hash`` of the data dir it was made with (``manifest.json``'s content hash):
the vanilla model's ``finetune.json``, each ``stage_K/stage.json``, ``run.json``, and each evaluation — the
lmms-eval hooks put ``data_hash`` and ``data_dir`` into the task's ``metadata``, which lmms-eval writes to
``results.json`` under ``configs[<task>]["metadata"]``. (lmms-eval 0.7.3's ``task_hashes`` cannot tell two data
sets apart: it hashes ``Instance.doc``, which that version never sets, so every doc hashes alike.)

:func:`check_run_data` is what ``icu-bench report`` runs: every stage record and every evaluation of a run must
carry the run's data hash. Records without a hash (written before it was recorded) are accepted as they are.
No torch import.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from icu_tasks.errors import DataError, StageError
from icu_tasks.records.files import FORMAT_VERSIONS, RecordVersionError, read_record

#: The keys the hooks add to a task's lmms-eval ``metadata`` (and so to ``results.json``'s ``configs``).
DATA_HASH_KEY = "data_hash"
DATA_DIR_KEY = "data_dir"
#: The flag (or ``icu_hf`` model_arg) that accepts a data set other than the recorded one.
ALLOW_FLAG = "--allow-data-mismatch"
SHOWN = 16  # hex digits of a hash shown in messages


def package_versions(*dists: str) -> dict[str, str]:
    """``{distribution: version}`` of the installed packages that decide an artefact ("not installed" when
    missing). The one reader of package versions: the data manifest and ``stage.json``/``finetune.json``
    record them through it."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in dists:
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            out[dist] = "not installed"
    return out


def short(value: str | None) -> str:
    """A hash as shown in messages (its first :data:`SHOWN` hex digits)."""
    return str(value)[:SHOWN] if value else "unknown"


def mismatch_message(
    what: str, expected: str, expected_dir: Any, actual: str, actual_dir: Any, flag: str = ALLOW_FLAG
) -> str:
    """One line naming both hashes and both dirs: ``what`` was made with ``expected``, the data is ``actual``."""
    return (
        f"{what} was made with data hash {short(expected)} (data dir {expected_dir or 'unknown'}), but the data "
        f"dir {actual_dir} has data hash {short(actual)}; use that data dir, or pass {flag} to use this one anyway"
    )


def check_same_data(
    what: str,
    expected: str | None,
    expected_dir: Any,
    actual: str | None,
    actual_dir: Any,
    *,
    allow: bool = False,
    flag: str = ALLOW_FLAG,
) -> None:
    """Raise :class:`DataError` when both hashes are known and differ (unless ``allow``)."""
    if expected and actual and expected != actual and not allow:
        raise DataError(mismatch_message(what, expected, expected_dir, actual, actual_dir, flag))


def manifest_hash(data_dir: str | Path) -> str | None:
    """The ``data_hash`` of ``data_dir/manifest.json`` without validating the dir (None if unreadable)."""
    try:
        manifest = json.loads((Path(data_dir) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    value = manifest.get(DATA_HASH_KEY) if isinstance(manifest, dict) else None
    return value if isinstance(value, str) and value else None


def _json(path: Path) -> dict:
    """A record for an identity check: ``{}`` when absent or unreadable (the caller then has no identity to
    compare); a format version newer than this package reads is still an error."""
    if path.name not in FORMAT_VERSIONS:
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}
    try:
        return read_record(path)
    except RecordVersionError:
        raise
    except StageError:
        return {}


def eval_data(eval_dir: Path) -> list[tuple[str, str | None, Path]]:
    """``(data_hash, data_dir, results file)`` of every ICU task scored under ``eval_dir`` that recorded one."""
    out = []
    for path in sorted(eval_dir.rglob("*_results.json")):
        configs = _json(path).get("configs")
        for config in (configs or {}).values() if isinstance(configs, dict) else ():
            meta = config.get("metadata") if isinstance(config, dict) else None
            if isinstance(meta, dict) and isinstance(meta.get(DATA_HASH_KEY), str):
                out.append((meta[DATA_HASH_KEY], meta.get(DATA_DIR_KEY), path))
    return out


def run_data(root: Path) -> tuple[str | None, str | None, str]:
    """``(data_hash, data_dir, where it was read)`` a run was made with: ``run.json``, else its first stage."""
    from icu_tasks.records import layout

    record = _json(root / layout.RUN_JSON)
    if record.get(DATA_HASH_KEY):
        return record[DATA_HASH_KEY], record.get("data"), str(root / layout.RUN_JSON)
    for stage in sorted(
        root.glob(f"{layout.STAGE_PREFIX}*/{layout.STAGE_JSON}"), key=lambda p: p.parent.name
    ):
        record = _json(stage)
        if record.get(DATA_HASH_KEY):
            return record[DATA_HASH_KEY], record.get("data_dir"), str(stage)
    return None, None, ""


def check_run_data(root: str | Path, *, allow: bool = False) -> str | None:
    """Refuse a run whose stages or evaluations were made with other data than the run; returns its hash.

    The run's hash comes from ``run.json`` (or its first stage); every ``stage_K/stage.json`` and every
    evaluation under ``eval/stage_K/`` that recorded a hash must carry the same one.
    """
    from icu_tasks.records import layout

    root = Path(root)
    expected, expected_dir, source = run_data(root)
    if not expected:
        return None
    what = f"run {root} ({Path(source).name})"
    for stage in sorted(root.glob(f"{layout.STAGE_PREFIX}*/{layout.STAGE_JSON}")):
        record = _json(stage)
        check_same_data(
            what, expected, expected_dir, record.get(DATA_HASH_KEY), record.get("data_dir"), allow=allow
        )
    for stage_eval in sorted((root / layout.EVAL_DIR).glob(f"{layout.STAGE_PREFIX}*")):
        for actual, actual_dir, path in eval_data(stage_eval):
            if actual != expected and not allow:
                raise DataError(
                    f"{path.relative_to(root)} was scored on data hash {short(actual)} (data dir {actual_dir}), "
                    f"but {what} was made with data hash {short(expected)} (data dir {expected_dir}); re-score "
                    f"that stage on the run's data, or pass {ALLOW_FLAG} to report it anyway"
                )
    return expected
