"""Where things are: the data dir (``ICU_DATA_DIR``) and the lmms-eval task YAMLs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: Environment variable that points the lmms-eval tasks (and every command's default) at a data dir.
DATA_ENV = "ICU_DATA_DIR"
_REPO_ROOT = Path(__file__).resolve().parent.parent


def default_data_dir() -> Path:
    """``$ICU_DATA_DIR`` if set, else ``./data/icu`` under the current directory."""
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else Path.cwd() / "data" / "icu"


def task_yamls_dir() -> Path:
    """The folder to pass to ``lmms-eval --include_path`` (or ``TaskManager(include_path=...)``).

    A source checkout / editable install uses the repo's ``task_yamls/``; a wheel install ships them to
    ``<prefix>/share/icu-bench/task_yamls``.
    """
    source = _REPO_ROOT / "task_yamls"
    if source.is_dir():
        return source
    return Path(sys.prefix) / "share" / "icu-bench" / "task_yamls"
