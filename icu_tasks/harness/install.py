"""Place the ICU-Bench task YAMLs where lmms-eval's default task index finds them (and take them away again).

lmms-eval 0.7.3 indexes only its own ``lmms_eval/tasks/`` folder plus ``--include_path``, and it builds that
index before it reads ``LMMS_EVAL_PLUGINS``. :func:`install` therefore writes a real sub-folder
``lmms_eval/tasks/icu_bench/`` holding one symlink per file of :func:`icu_tasks.paths.task_yamls_dir` (the
task YAMLs, the ``_icu_*_yaml`` includes and ``_stub.jsonl``), so that

    lmms-eval --tasks icu_forget_vqa --model icu_hf --model_args pretrained=DIR

works without ``--include_path``. Why links to files inside a real folder: lmms-eval walks its task folder
with ``os.walk``, which does not enter a symlinked folder but lists symlinked files; a link keeps an editable
checkout in sync (an edited YAML is live at once), and ``include:`` / ``data_files`` resolve against the
folder of the link, where the sibling links are. ``!function icu_tasks.harness.hooks...`` falls back to a normal
import. Remove the folder (``icu-bench tasks uninstall``) before removing the package, or every lmms-eval
run stops on the dangling links.

The folder is written under a temporary name and renamed into place, and it carries a marker file
(:data:`MARKER`) listing what was placed; :func:`uninstall` removes only that and refuses a folder without
it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from icu_tasks.errors import ConfigError
from icu_tasks.paths import task_yamls_dir

#: Name of the sub-folder of lmms-eval's task folder that :func:`install` writes.
INSTALL_DIRNAME = "icu_bench"
#: Marker file inside the installed folder: JSON with the source folder and the file names placed.
MARKER = ".icu-bench-install.json"


def lmms_eval_tasks_dir() -> Path:
    """The ``tasks`` folder of the installed lmms-eval (what its default task index walks)."""
    spec = importlib.util.find_spec("lmms_eval.tasks")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("lmms-eval is not installed in this environment (no lmms_eval.tasks package)")
    return Path(next(iter(spec.submodule_search_locations)))


def source_files(source: Path) -> list[str]:
    """Names of the files lmms-eval needs from ``source``: ``*.yaml`` plus the ``_*`` includes and stub."""
    if not source.is_dir():
        raise ConfigError(
            f"the task YAML folder {source} is missing; reinstall icu-bench from a source checkout"
        )
    names = sorted(
        p.name
        for p in source.iterdir()
        if p.is_file() and (p.name.endswith(".yaml") or p.name.startswith("_"))
    )
    if not any(n.endswith(".yaml") for n in names):
        raise ConfigError(f"the task YAML folder {source} holds no *.yaml task files")
    return names


@dataclass
class InstallState:
    """What :func:`status` found in ``folder`` (the ``icu_bench`` sub-folder of a tasks folder)."""

    folder: Path
    source: Path
    exists: bool = False
    ours: bool = False  # the folder carries the marker
    placed: list[str] = field(default_factory=list)  # names the marker lists
    missing: list[str] = field(default_factory=list)  # source files without a correct link
    extra: list[str] = field(default_factory=list)  # marker-listed names no longer in the source

    @property
    def installed(self) -> bool:
        """The folder is ours and links every source file (and nothing else it placed) correctly."""
        return self.exists and self.ours and not self.missing and not self.extra

    def describe(self) -> str:
        """One line for ``icu-bench tasks status``."""
        if not self.exists:
            return (
                f"not installed: {self.folder} does not exist; run `icu-bench tasks install` "
                '(or pass --include_path "$(icu-bench tasks-path)" to lmms-eval)'
            )
        if not self.ours:
            return f"not installed: {self.folder} exists but was not written by `icu-bench tasks install`"
        if self.installed:
            return f"installed: {len(self.placed)} task files in {self.folder} (symlinks to {self.source})"
        problems = []
        if self.missing:
            problems.append(f"missing or wrong: {', '.join(self.missing)}")
        if self.extra:
            problems.append(f"no longer in the source: {', '.join(self.extra)}")
        return f"out of date: {self.folder} ({'; '.join(problems)}); run `icu-bench tasks install`"


def _read_marker(folder: Path) -> list[str] | None:
    path = folder / MARKER
    if not path.is_file():
        return None
    try:
        files = json.loads(path.read_text())["files"]
    except (ValueError, KeyError, TypeError):
        return None
    return [str(f) for f in files] if isinstance(files, list) else None


def _links_to(link: Path, target: Path) -> bool:
    return link.is_symlink() and Path(os.readlink(link)) == target


def status(tasks_dir: Path | None = None, source: Path | None = None) -> InstallState:
    """Whether the ICU tasks are installed into ``tasks_dir`` (default: lmms-eval's own task folder)."""
    source = (source or task_yamls_dir()).resolve()
    folder = Path(tasks_dir or lmms_eval_tasks_dir()) / INSTALL_DIRNAME
    state = InstallState(folder=folder, source=source, exists=folder.exists() or folder.is_symlink())
    if not state.exists:
        return state
    placed = _read_marker(folder) if folder.is_dir() and not folder.is_symlink() else None
    if placed is None:
        return state
    state.ours, state.placed = True, placed
    names = source_files(source)
    state.missing = [n for n in names if n not in placed or not _links_to(folder / n, source / n)]
    state.extra = [n for n in placed if n not in names]
    return state


def _check_writable(parent: Path) -> None:
    if not parent.is_dir():
        raise ConfigError(f"the lmms-eval task folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(
            f"cannot write into {parent} (permission denied); install into an environment you own, or pass "
            '--include_path "$(icu-bench tasks-path)" to lmms-eval instead'
        )


def _write_folder(tmp: Path, source: Path, names: list[str]) -> None:
    tmp.mkdir()
    for name in names:
        os.symlink(source / name, tmp / name)
    marker = {"written_by": "icu-bench tasks install", "source": str(source), "files": names}
    (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")


def install(tasks_dir: Path | None = None, source: Path | None = None) -> str:
    """Link every task file of ``source`` into ``tasks_dir/icu_bench``; returns what was done, in one line.

    Idempotent: an up-to-date folder is left alone ("already installed"); an out-of-date one (a file added to
    or removed from the source, a link to another checkout) is rewritten. The new folder is built under a
    temporary name and renamed into place, so lmms-eval never indexes half of it. A folder of that name
    without the marker is refused.
    """
    state = status(tasks_dir, source)
    if state.installed:
        return f"ICU-Bench tasks already installed: {len(state.placed)} task files in {state.folder}"
    if state.exists and not state.ours:
        raise ConfigError(
            f"{state.folder} exists but was not written by `icu-bench tasks install` (no {MARKER}); "
            "remove it yourself or pass --target"
        )
    parent = state.folder.parent
    _check_writable(parent)
    names = source_files(state.source)
    tmp = parent / f".{INSTALL_DIRNAME}.tmp-{os.getpid()}"
    old = parent / f".{INSTALL_DIRNAME}.old-{os.getpid()}"
    for leftover in (tmp, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    try:
        _write_folder(tmp, state.source, names)
        if state.exists:
            os.rename(state.folder, old)
        try:
            os.rename(tmp, state.folder)
        except OSError:
            if status(tasks_dir, source).installed:  # a concurrent install got there first
                return f"ICU-Bench tasks already installed: {len(names)} task files in {state.folder}"
            raise
    finally:
        for leftover in (tmp, old):
            if leftover.exists():
                shutil.rmtree(leftover)  # links are unlinked, never followed
    verb = "updated" if state.exists else "installed"
    return f"{verb} {len(names)} task files into {state.folder} (symlinks to {state.source})"


def uninstall(tasks_dir: Path | None = None) -> str:
    """Remove what :func:`install` placed in ``tasks_dir/icu_bench``; returns what was done, in one line.

    Idempotent ("not installed" when the folder is absent). Only the files the marker lists are removed; a
    folder without the marker is refused, and files someone else put into the folder are kept with it.
    """
    folder = Path(tasks_dir or lmms_eval_tasks_dir()) / INSTALL_DIRNAME
    if not (folder.exists() or folder.is_symlink()):
        return f"ICU-Bench tasks not installed: {folder} does not exist; nothing to remove"
    placed = _read_marker(folder) if folder.is_dir() and not folder.is_symlink() else None
    if placed is None:
        raise ConfigError(
            f"{folder} was not written by `icu-bench tasks install` (no {MARKER}); refusing to remove it"
        )
    _check_writable(folder.parent)
    ours = {*placed, MARKER}
    others = sorted(p.name for p in folder.iterdir() if p.name not in ours)
    if not others:  # rename first: lmms-eval sees the whole folder or none of it
        doomed = folder.parent / f".{INSTALL_DIRNAME}.removing-{os.getpid()}"
        os.rename(folder, doomed)
        shutil.rmtree(doomed)
        return f"removed {len(placed)} task files and {folder}"
    for name in placed:
        path = folder / name
        if path.is_symlink() or path.is_file():
            path.unlink()
    (folder / MARKER).unlink()
    kept = ", ".join(others)
    return f"removed {len(placed)} task files from {folder}; kept the folder, it holds other files: {kept}"


def _option_value(argv: list[str], option: str) -> str | None:
    for i, token in enumerate(argv):
        if token == option and i + 1 < len(argv):
            return argv[i + 1]
        if token.startswith(option + "="):
            return token.split("=", 1)[1]
    return None


def _option_given(argv: list[str], option: str, min_len: int) -> bool:
    """``option`` or an argparse abbreviation of it (at least ``min_len`` characters) appears in argv."""
    names = (t.split("=", 1)[0] for t in argv if t.startswith("--"))
    return any(len(n) >= min_len and option.startswith(n) for n in names)


def missing_task_message(
    argv: list[str], environ: dict[str, str] | None = None, tasks_dir: Path | None = None
) -> str | None:
    """The one-line error for ``lmms-eval --model icu_hf --tasks <ICU task>`` when lmms-eval cannot see it.

    ``argv`` is lmms-eval's command line (without the program). Returns ``None`` (no opinion) unless the run
    asks for ``icu_hf`` and an ICU task name, gives no ``--include_path``/``--config`` and no
    ``LMMS_EVAL_PLUGINS``, and no ``<name>.yaml`` exists under lmms-eval's task folder — exactly the case
    where lmms-eval would print "Tasks not found" with a traceback and exit 0. ``tasks_dir`` defaults to
    :func:`lmms_eval_tasks_dir`.
    """
    environ = os.environ if environ is None else environ
    if _option_value(argv, "--model") != "icu_hf" or environ.get("LMMS_EVAL_PLUGINS"):
        return None
    if _option_given(argv, "--include_path", 3) or _option_given(argv, "--config", 5):
        return None
    try:
        known = {name.removesuffix(".yaml") for name in source_files(task_yamls_dir())}
        tasks_dir = Path(tasks_dir or lmms_eval_tasks_dir())
    except ConfigError:
        return None
    wanted = [t for t in (_option_value(argv, "--tasks") or "").split(",") if t in known]
    if not wanted:
        return None
    if status(tasks_dir).installed:
        return None
    present = {f for _, _, files in os.walk(tasks_dir) for f in files}
    missing = [t for t in wanted if f"{t}.yaml" not in present]
    if not missing:
        return None
    return (
        f"the ICU-Bench task {missing[0]} is not installed in lmms-eval ({tasks_dir}); run "
        '`icu-bench tasks install` once, or pass --include_path "$(icu-bench tasks-path)" to lmms-eval'
    )
