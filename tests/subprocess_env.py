"""The environment of a subprocess a test starts: hermetic, with every cache under the test's tmp dir.

``lmms-eval`` builds its stub dataset through ``datasets`` (``HF_DATASETS_CACHE``, ``HF_HOME``), the report
draws with matplotlib (``MPLCONFIGDIR``), ``accelerate launch`` reads a default config from ``HF_HOME`` and
torchelastic writes its logs under ``TMPDIR``; none of them may write to (or read a developer's settings from)
the home directory or the shared /tmp.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: The environment of a process that shares the two cores with another one (:class:`Started`): its OpenMP
#: threads sleep while they wait instead of spinning (libgomp's default spins, and two spinning 2-thread
#: processes on two cores slow each other down). Only for overlapped runs: a process alone on the machine is
#: faster spinning. It changes no result, only how threads wait.
OVERLAPPED = {"OMP_WAIT_POLICY": "PASSIVE"}


def subprocess_env(tmp: Path, **extra: str) -> dict[str, str]:
    """``os.environ`` + offline/CPU settings + every cache dir under ``tmp/cache`` (created), + ``extra``."""
    cache = Path(tmp) / "cache"
    (cache / "tmp").mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        TOKENIZERS_PARALLELISM="false",
        CUDA_VISIBLE_DEVICES="",
        HF_HOME=str(cache / "hf"),
        HF_DATASETS_CACHE=str(cache / "hf" / "datasets"),
        MPLCONFIGDIR=str(cache / "matplotlib"),
        XDG_CACHE_HOME=str(cache / "xdg"),
        TMPDIR=str(cache / "tmp"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(extra)
    return env


class Started:
    """A subprocess started now and awaited later (:func:`started_together`), so that independent CLI runs of a test
    module overlap: most of an ``lmms-eval`` or ``icu-bench`` run is single-threaded start-up (imports, task
    indexing), and two of them share the machine's two cores. Output goes to files, never to a pipe that could
    fill while nobody reads it."""

    def __init__(self, cmd: list[str], logs: Path, **popen: Any) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        self.cmd = cmd
        self._out, self._err = logs / "stdout.txt", logs / "stderr.txt"
        with self._out.open("w") as out, self._err.open("w") as err:
            self._proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, **popen)
        self._done: subprocess.CompletedProcess[str] | None = None

    def result(self, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """Wait for the process (killed after ``timeout`` s) and return it like :func:`subprocess.run`."""
        if self._done is None:
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
                raise
            self._done = subprocess.CompletedProcess(
                self.cmd, self._proc.returncode, self._out.read_text(), self._err.read_text()
            )
        return self._done

    def kill(self) -> None:
        """Stop the process if it still runs (fixture teardown)."""
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


@contextmanager
def started_together(
    root: Path, runs: dict[str, tuple[list[str], Path | str]]
) -> Iterator[dict[str, Started]]:
    """Start every ``name: (command, $ICU_DATA_DIR)`` at once, each in ``root/name`` with the hermetic
    :func:`subprocess_env`; yields ``{name: Started}`` and kills whatever still runs on exit."""
    started = {}
    try:
        for name, (cmd, data_dir) in runs.items():
            work = root / name
            env = subprocess_env(work, ICU_DATA_DIR=str(data_dir), **OVERLAPPED)
            started[name] = Started(cmd, work / "logs", env=env, cwd=work)
        yield started
    finally:
        for run in started.values():
            run.kill()
