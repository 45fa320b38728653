"""The on-disk layout of models and runs, their JSON records, and the one way to write them atomically.

Every reader and writer of these files goes through this module (``icu_unlearn`` writes, :mod:`icu_tasks.report`
reads), so a file name or a record key exists once. Layout::

    MODEL/finetune.json       a vanilla model dir: weights + processor + the fine-tune record (FinetuneRecord)
    RUN/run.json              the run's config (RunRecord)
    RUN/cost.json             the run's cost estimate and measured seconds per stage
    RUN/demo.json             ``icu-bench demo`` only: what the demo ran and how long each phase took
    RUN/.lock                 held (flock) by the one process working on the run
    RUN/stage_K/              K >= 1: PEFT adapter, optional masks.safetensors and method artifacts,
                              README.md (model card) and stage.json (StageRecord)
    RUN/eval/stage_K/         lmms-eval output of stage K (K = 0: the vanilla model)
    RUN/report/               icu-bench report output (report.json, report.md, PNG figures)
    RUN/probes/stage_K/NAME/  a robustness probe's attacked stage (NAME relearn | benign; K = 0: scratch)
    RUN/probes/eval/stage_K/NAME/  lmms-eval output of a probe (also unlearned, vanilla, int8, int4, nf4)

Every JSON record is read and written through :mod:`icu_tasks.records.files`, stamped with a
``format_version``.

A dir is written under a temporary sibling name ``.tmp-<name>-<pid>-…`` and renamed into place, so a dir that
exists is complete. What the atomic writers leave behind has the modes a plain ``mkdir``/``open`` would give
under the process's umask (:func:`follow_umask`; ``tempfile`` alone makes 0700 dirs and 0600 files). Temp
dirs of killed writers are removed by the next writer of the same dir (:func:`clean_stale`) or, under the
run's lock, all at once (:func:`clean_partial`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypedDict

from icu_tasks.errors import StageError, environment_message

RUN_JSON = "run.json"
STAGE_JSON = "stage.json"
FINETUNE_JSON = "finetune.json"
COST_JSON = "cost.json"
DEMO_JSON = "demo.json"
REPORT_JSON = "report.json"
#: A comparison dir's record (``icu-bench compare``): its frozen protocol and the seconds of every step.
COMPARE_JSON = "compare.json"
EVAL_DIR = "eval"
REPORT_DIR = "report"
PROBES_DIR = "probes"
#: Probes that train an attacked stage (``RUN/probes/stage_K/NAME``; scratch only at K = 0).
ATTACK_PROBES: tuple[str, ...] = ("relearn", "benign", "scratch")
#: Quantization probes (``icu_hf`` ``quantize=NAME``).
QUANT_PROBES: tuple[str, ...] = ("int8", "int4", "nf4")
#: The unprobed references scored beside the probes: stage K as it is, and the vanilla model (K = 0).
UNLEARNED_PROBE, VANILLA_PROBE = "unlearned", "vanilla"
LOCK_FILE = ".lock"
MASKS_FILE = "masks.safetensors"
TMP_PREFIX = ".tmp-"
STAGE_PREFIX = "stage_"
_STAGE_NAME = re.compile(rf"^{STAGE_PREFIX}(\d+)$")


class RunRecord(TypedDict, total=False):
    """``run.json``: what a run is (compared on resume) — ``icu_unlearn.pipeline.run.RunConfig`` + identities."""

    base: str  #: vanilla model dir (a location: ignored on resume when identities are recorded)
    data: str  #: data dir (a location)
    name: str  #: the run's name (its dir name by default; a location)
    method: str  #: registered method name
    stages: int  #: number of unlearning stages; stage K forgets forget task K
    method_args: dict[str, Any]  #: method config overrides
    tasks: list[str]  #: lmms-eval tasks scored per stage
    batch_size: int
    max_new_tokens: int | None
    limit: int | None
    device: str | None
    base_model_id: str  #: content identity of the vanilla model
    data_hash: str  #: content hash of the data


class StageRecord(TypedDict, total=False):
    """``stage_K/stage.json``: one unlearning stage (docs/continual_runs.md, "Reproducibility")."""

    format_version: int
    stage: int  #: K >= 1
    method: str
    config: dict[str, Any]
    forget_tasks: list[int]  #: the forget task(s) this stage unlearned ([K])
    seed: int
    data_dir: str
    data_hash: str
    base_model: str
    base_model_id: str
    base_data_hash: str | None  #: the data the vanilla model was fine-tuned on
    parent: dict[str, Any] | None  #: ``{"path", "stage", "method", "stage_id"}`` of stage K-1
    adapter: dict[str, Any]  #: ``{"r", "lora_alpha", "target_modules"}``
    examples: dict[str, int]  #: ``{"forget", "retain"}`` rows used
    changed_modules: dict[str, dict[str, float]]  #: module → delta_norm / norm_before / norm_after
    masks: dict[str, Any]  #: pruned output channels (training-free methods)
    method_info: dict[str, Any]
    train_seconds: float
    steps: int  #: optimizer steps actually run
    dtype: str  #: the precision the base was loaded and trained in (``float32``, ``bfloat16``, ``float16``)
    log_history: list[dict[str, Any]]
    world_size: int
    versions: dict[str, str]
    created: str
    stage_id: str  #: content identity of the stage dir
    files: list[str]


class FinetuneRecord(TypedDict, total=False):
    """``MODEL/finetune.json``: how a vanilla model was made."""

    format_version: int
    base_model: str
    data_dir: str
    data_hash: str
    config: dict[str, Any]
    rows: int
    examples_per_epoch: int
    world_size: int
    dtype: str  #: the precision the model was loaded and trained in
    train_seconds: float
    changed_modules: int
    log_history: list[dict[str, Any]]
    steps: int
    stopping: dict[str, Any] | None  #: the stopping rule's checks and outcome (None when off)
    versions: dict[str, str]
    model_id: str  #: content identity of the saved model


# ----------------------------------------------------------------------------------------------- paths


def stage_dir(run_dir: str | os.PathLike, k: int) -> Path:
    """``RUN/stage_K`` (K >= 1)."""
    return Path(run_dir) / f"{STAGE_PREFIX}{int(k)}"


def eval_dir(run_dir: str | os.PathLike, k: int) -> Path:
    """``RUN/eval/stage_K`` (K = 0 is the vanilla model)."""
    return Path(run_dir) / EVAL_DIR / f"{STAGE_PREFIX}{int(k)}"


def probe_dir(run_dir: str | os.PathLike, k: int, probe: str) -> Path:
    """``RUN/probes/stage_K/PROBE``: the attacked stage a probe of stage ``k`` trained (K = 0: the vanilla)."""
    return Path(run_dir) / PROBES_DIR / f"{STAGE_PREFIX}{int(k)}" / probe


def probe_eval_dir(run_dir: str | os.PathLike, k: int, probe: str) -> Path:
    """``RUN/probes/eval/stage_K/PROBE``: lmms-eval's output of one probe of stage ``k``."""
    return Path(run_dir) / PROBES_DIR / EVAL_DIR / f"{STAGE_PREFIX}{int(k)}" / probe


def report_dir(run_dir: str | os.PathLike) -> Path:
    """``RUN/report``."""
    return Path(run_dir) / REPORT_DIR


def stage_indices(folder: str | os.PathLike) -> set[int]:
    """The K of every ``stage_K`` dir directly in ``folder`` (empty if it is not a dir)."""
    folder = Path(folder)
    if not folder.is_dir():
        return set()
    return {int(m.group(1)) for p in folder.iterdir() if p.is_dir() and (m := _STAGE_NAME.match(p.name))}


# ----------------------------------------------------------------------------------------------- writing


def write_json(path: Path, payload: Any) -> None:
    """Write a record as indented, key-sorted JSON (inside a dir that is being written atomically)."""
    path.write_text(json_text(payload), encoding="utf-8")


def json_text(payload: Any) -> str:
    """A record as the text every JSON file here holds: indented, key-sorted, one trailing newline."""
    return json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"


def current_umask() -> int:
    """The process's file-creation mask (from ``/proc/self/status`` where it exists, else set and restored)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(root: str | os.PathLike) -> None:
    """Give ``root`` and everything under it the mode a plain ``mkdir``/``open`` makes under the umask.

    Dirs get ``0o777 & ~umask``; files ``0o666 & ~umask`` plus the execute bits they already have (so 0755 /
    0644 under umask 022). Symlinks are left alone. Used on what ``tempfile`` (and libraries that write through
    it) created private before it is renamed into place.
    """
    mask = current_umask()
    root = Path(root)
    paths = [root, *root.rglob("*")] if root.is_dir() and not root.is_symlink() else [root]
    for path in paths:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            continue
        base = 0o777 if stat.S_ISDIR(st.st_mode) else 0o666 | (st.st_mode & 0o111)
        mode = base & ~mask
        if stat.S_IMODE(st.st_mode) != mode:
            os.chmod(path, mode)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Create ``path`` through ``write(tmp)`` on a temp file in the same dir, then ``os.replace``; returns it.

    If ``write`` or the rename fails, the temp file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        follow_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and durably (fsync before the rename)."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    return atomic_write(path, write)


def atomic_write_json(path: str | os.PathLike, payload: Any) -> Path:
    """Write a record as indented, key-sorted JSON to ``path`` atomically (:func:`atomic_write_text`)."""
    return atomic_write_text(path, json_text(payload))


def check_writable(final: Path, overwrite: bool) -> None:
    """Refuse early (before any work) if ``final`` exists and ``overwrite`` is off, or cannot be made."""
    if final.exists() and not overwrite:
        raise StageError(f"{final} already exists; pass --overwrite to replace it")
    check_parents(final)


def check_parents(path: str | os.PathLike) -> None:
    """Refuse a ``path`` that cannot be created because one of its parents is a file (a one-line error)."""
    for parent in Path(path).absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise StageError(f"{parent} is a file, not a directory")
            return


@contextlib.contextmanager
def atomic_dir(final: Path, *, overwrite: bool = False, required: str | None = None) -> Iterator[Path]:
    """Yield a fresh temp dir next to ``final``; when the block succeeds, rename it to ``final``.

    ``required`` (if given) must have been written into the temp dir: it is the file that marks the dir
    complete. ``final`` must not exist unless ``overwrite`` (the old dir is moved aside first and deleted only
    after the new one is in place). If anything fails nothing at ``final`` changes, the temp dir is removed (and
    the parent too when this call created it and it is still empty); a full or read-only disk is a
    :class:`StageError` naming ``final``. The temp name carries the writer's pid (see :func:`clean_stale`).
    """
    final = Path(final)
    check_writable(final, overwrite)
    made_parent = not final.parent.exists()
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(final)
    pid = os.getpid()
    tmp: Path | None = None
    old: Path | None = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{final.name}-{pid}-", dir=final.parent))
        yield tmp
        if required is not None and not (tmp / required).is_file():
            raise StageError(f"internal error: no {required} written for {final}")
        follow_umask(tmp)
        if final.exists():
            if not overwrite:
                raise StageError(f"{final} appeared while it was being written; refusing to overwrite it")
            old = final.with_name(f"{TMP_PREFIX}{final.name}-{pid}-old")
            os.replace(final, old)
        os.replace(tmp, final)
    except Exception as err:
        message = environment_message(err)
        if message is None:
            raise
        raise StageError(f"cannot write {final}: {message}") from err
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists():
            shutil.rmtree(old, ignore_errors=True)
        if made_parent and not final.exists():
            with contextlib.suppress(OSError):
                final.parent.rmdir()  # only if still empty


def write_dir_atomically(
    final: Path, fill: Callable[[Path], None], *, overwrite: bool = False, required: str = STAGE_JSON
) -> Path:
    """Create ``final`` atomically: ``fill(tmp_dir)`` writes the files (``required`` among them); returns it."""
    with atomic_dir(final, overwrite=overwrite, required=required) as tmp:
        fill(tmp)
    return Path(final)


def clean_stale(final: Path) -> list[Path]:
    """Remove the temp dirs that killed writers of ``final`` left next to it; returns what was removed.

    A temp dir is ``.tmp-<name>-<pid>-…``; it is stale when no process ``<pid>`` exists any more. Temp dirs
    of live writers, and names without a pid, are left alone.
    """
    final = Path(final)
    removed: list[Path] = []
    if not final.parent.is_dir():
        return removed
    for path in final.parent.glob(f"{TMP_PREFIX}{final.name}-*"):
        pid = path.name[len(TMP_PREFIX) + len(final.name) + 1 :].split("-", 1)[0]
        if not pid.isdigit() or _pid_alive(int(pid)):
            continue
        _remove(path)
        removed.append(path)
    return removed


def clean_partial(run_dir: str | os.PathLike) -> list[Path]:
    """Remove every temp dir/file under a run dir and its ``eval/`` (call it holding the run's lock)."""
    root = Path(run_dir)
    removed: list[Path] = []
    for parent in (root, root / EVAL_DIR):
        if parent.is_dir():
            for path in parent.glob(f"{TMP_PREFIX}*"):
                _remove(path)
                removed.append(path)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (one we may not signal counts as existing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
