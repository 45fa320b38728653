"""Where things are: the data dir (``ICU_DATA_DIR``) and the lmms-eval task YAMLs (and the names they define)."""

from __future__ import annotations

import functools
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


#: Folders lmms-eval's task index skips.
_IGNORED_DIRS = frozenset({"__pycache__", ".ipynb_checkpoints"})


def task_names(folder: Path | None = None) -> list[str]:
    """The task, group and tag names the YAMLs in ``folder`` (default :func:`task_yamls_dir`) define, sorted.

    Read by lmms-eval's own indexing rules (``TaskManager._get_task_and_group`` over ``*.yaml``, ``include:``
    templates merged in: ``task`` a string → a task, and its ``tag``/``group`` values → tags; ``task`` a list
    → a group named ``group``; ``class`` → a python task), without importing lmms-eval, so that a mistyped
    task name is refused in a fraction of a second. ``tests/test_task_yamls.py`` checks that the result is
    ``TaskManager(include_path=folder, include_defaults=False).all_tasks``.
    """
    names: set[str] = set()
    root = folder or task_yamls_dir()
    for path in sorted(root.rglob("*.yaml")):
        if _IGNORED_DIRS.intersection(path.relative_to(root).parts[:-1]):
            continue
        config = _read_task_yaml(path)
        task = config.get("task")
        if "class" in config or isinstance(task, str):
            names.add(task)
            if "class" not in config:
                for key in ("tag", "group"):
                    value = config.get(key, [])
                    names.update([value] if isinstance(value, str) else value)
        elif isinstance(task, list):
            names.add(config["group"])
    return sorted(names)


def _read_task_yaml(path: Path) -> dict:
    """A task YAML with its ``include:`` templates merged in as lmms-eval merges them (the file's own keys
    win, then the first template listed); tags such as ``!function`` are read as ``None``."""
    import yaml

    config = yaml.load(path.read_text(encoding="utf-8"), Loader=_names_loader()) or {}  # noqa: S506 - SafeLoader
    includes = config.pop("include", None)
    if not includes:
        return config
    merged: dict = {}
    for name in reversed([includes] if isinstance(includes, str) else includes):
        merged.update(_read_task_yaml(Path(name) if Path(name).is_file() else path.parent / name))
    return merged | config


@functools.cache
def _names_loader() -> type:
    """A safe YAML loader (libyaml's ``CSafeLoader`` where PyYAML has it) that reads any tag (``!function``) as
    ``None``: only the names matter here."""
    import yaml

    class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        pass

    _Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return _Loader
