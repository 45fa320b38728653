"""Helpers of the CLI failure tests: run ``icu-bench`` (in a subprocess or in this process), check its one error
line, snapshot dirs."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

#: The real CLI, run by the interpreter of the test session (same venv as the ``icu-bench`` script).
CLI = [sys.executable, "-m", "icu_unlearn.cli"]


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: hermetic (offline, CPU; the session's thread count, set by
    ``conftest.py``) plus ``extra``."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        CUDA_VISIBLE_DEVICES="",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(extra)
    return env


def run_cli(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``icu-bench ARGS`` in ``cwd``; returns the finished process with text stdout/stderr."""
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [*CLI, *args], cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout
    )


def call_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``icu-bench ARGS`` in this process (``icu_unlearn.cli.main``) in ``cwd``, stdout and stderr captured;
    the result reads like :func:`run_cli`'s (an uncaught exception propagates: a traceback fails the test).

    Much cheaper than a subprocess (no interpreter start, no imports); the session's environment is already
    hermetic (``conftest.py``)."""
    from icu_unlearn.cli import main

    cwd.mkdir(parents=True, exist_ok=True)
    out, err = io.StringIO(), io.StringIO()
    before = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as exc:  # argparse: --help, usage errors
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(before)
    return subprocess.CompletedProcess([*CLI, *args], code, out.getvalue(), err.getvalue())


def assert_one_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """A failed run whose stderr is exactly one ``error: ...`` line containing every needle; returns it."""
    assert proc.returncode != 0, f"exit 0; stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every path under ``roots`` → ``("dir",)`` or ``(size, mtime_ns, sha256)`` (a root may be a file)."""
    out: dict[str, tuple] = {}
    for i, root in enumerate(roots):
        if not root.exists():
            out[f"{i}:"] = ("absent",)
            continue
        for path in [root, *sorted(root.rglob("*"))] if root.is_dir() else [root]:
            key = f"{i}:{path.relative_to(root).as_posix()}"
            if path.is_dir() and not path.is_symlink():
                out[key] = ("dir",)
            else:
                st = path.lstat()
                out[key] = (st.st_size, st.st_mtime_ns, _sha256(path))
    return out


def edit_json(path: Path, change: Callable[[dict], object]) -> None:
    """Rewrite the JSON file ``path`` after ``change(record)`` has edited its content in place."""
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))
