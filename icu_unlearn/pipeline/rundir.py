"""A run directory's state: its config (``run.json``), its lock, and which stages and evaluations are complete.

The layout (file names, ``stage_K`` / ``eval/stage_K`` paths, the ``run.json`` record) and the atomic writers
belong to :mod:`icu_tasks.records.layout`; this module adds what only the runner needs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from icu_tasks.errors import DataError, StageError
from icu_tasks.records import layout
from icu_tasks.records.files import FORMAT_KEY, WRITER_KEY, RecordVersionError, read_record, write_record
from icu_tasks.records.provenance import mismatch_message

#: run.json keys that say where things are, not what they are: ignored when identities are recorded.
LOCATION_KEYS = ("base", "data", "name")
IDENTITY_KEYS = ("base_model_id", "data_hash")


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The run.json keys that differ; by identity (not location) when ``old`` records identities."""
    keys = set(old) | set(new)
    if all(old.get(k) for k in IDENTITY_KEYS):
        keys -= set(LOCATION_KEYS)
    else:  # written before identities were recorded: compare what it has, paths included
        keys -= {k for k in IDENTITY_KEYS if k not in old}

    return sorted(k for k in keys if old.get(k) != new.get(k))


class RunDir:
    """Paths and state of one run directory."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise StageError(f"run dir {self.root} is a file, not a directory")

    @property
    def config_path(self) -> Path:
        return self.root / layout.RUN_JSON

    def stage_dir(self, k: int) -> Path:
        """The unlearning checkpoint of stage ``k`` (k >= 1)."""
        return layout.stage_dir(self.root, k)

    def eval_dir(self, k: int) -> Path:
        """lmms-eval's output for stage ``k`` (k = 0 is the vanilla model)."""
        return layout.eval_dir(self.root, k)

    @property
    def report_dir(self) -> Path:
        return layout.report_dir(self.root)

    def stage_complete(self, k: int) -> bool:
        return (self.stage_dir(k) / layout.STAGE_JSON).is_file()

    def eval_complete(self, k: int) -> bool:
        return self.eval_dir(k).is_dir() and any(self.eval_dir(k).rglob("*_results.json"))

    def clean_partial(self) -> list[Path]:
        """Remove temp dirs/files a killed process left behind (hold the lock); returns what was removed."""
        return layout.clean_partial(self.root)

    def check_config(self, config: dict[str, Any], *, overwrite: bool = False, write: bool = True) -> None:
        """Record ``config`` in run.json, or refuse if the run dir holds a different one.

        A run.json that records the base model's and the data's identity (``base_model_id``, ``data_hash``) is
        compared by those, not by the paths (``base``, ``data``, ``name``), so a copied or moved run resumes;
        its paths are then updated. An older run.json (paths only) is compared key by key. A different data
        hash is refused with both hashes named. With ``overwrite`` the old stages, evaluations and report are
        deleted first. ``write=False`` only checks (nothing is deleted or written).
        """
        if self.config_path.exists():
            try:
                old = read_record(self.config_path)
            except RecordVersionError:
                raise
            except StageError as err:
                raise StageError(f"{err}; use --overwrite to start over") from None
            old.pop(FORMAT_KEY, None)
            old.pop(WRITER_KEY, None)
            diff = _differences(old, config)
            if not diff and old == config:
                return
            if diff and not overwrite:
                if "data_hash" in diff:
                    raise DataError(
                        mismatch_message(
                            f"run dir {self.root}", old["data_hash"], old.get("data"), config["data_hash"],
                            config.get("data"), "--overwrite (deletes its stages and scores)",
                        )
                    )  # fmt: skip
                raise StageError(
                    f"run dir {self.root} was started with a different config (differs in: {', '.join(diff)}); "
                    "use another run dir or --overwrite"
                )
            if diff and write:
                for p in [
                    *self.root.glob(f"{layout.STAGE_PREFIX}*"),
                    self.root / layout.EVAL_DIR,
                    self.root / layout.PROBES_DIR,
                    self.report_dir,
                ]:
                    if p.is_dir():
                        shutil.rmtree(p)
        elif self.root.is_dir() and any(self.root.glob(f"{layout.STAGE_PREFIX}*")) and not overwrite:
            raise StageError(f"{self.root} holds stages but no run.json: not a run dir made by icu-bench run")
        if write:
            write_record(self.config_path, config)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on the run dir; a second process gets a StageError at once."""
        self.root.mkdir(parents=True, exist_ok=True)
        fh = open(self.root / layout.LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 - held for the block
        try:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                raise StageError(
                    f"run dir {self.root} is in use by {holder}; wait for it or use another dir"
                ) from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()}")
            fh.flush()
            yield
        finally:
            fh.close()
