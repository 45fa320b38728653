"""Session fixtures built once per test run, also when pytest-xdist splits the run over workers (``-n 2``).

Without xdist a session fixture is built in the session's own tmp dir. Under xdist every worker is its own
session, so the expensive fixtures (the small data set, the tiny model, the fine-tuned vanilla model) are built
by the first worker that needs them in a dir shared by all workers (the parent of the workers' tmp dirs, under
a file lock); the others wait for it and then read the same files. A build that failed is not retried by the
next worker: it fails with the first worker's message.

The workers also leave their ``FIXTURE_FACTS`` (measured values that the end-of-run summary prints) in the
shared dir, where the controlling process reads them.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock

#: Set by pytest-xdist in each worker process (``gw0``, ``gw1``, ...); absent without xdist.
WORKER_ENV = "PYTEST_XDIST_WORKER"


def xdist_worker() -> str | None:
    """This process's xdist worker id, or None when the run is not split."""
    return os.environ.get(WORKER_ENV)


def shared_root(factory: pytest.TempPathFactory, controller: bool = False) -> Path:
    """The dir every worker of this run shares (the controller's own tmp dir with ``controller=True``)."""
    base = factory.getbasetemp()
    return (base if controller else base.parent) / "shared"


def built_once(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], Path]) -> Path:
    """Path that ``build(empty_dir)`` returns, built once per test run (see the module docstring)."""
    if xdist_worker() is None:
        return build(factory.mktemp(name))
    root = shared_root(factory)
    root.mkdir(exist_ok=True)
    done, failed = root / f"{name}.done", root / f"{name}.failed"
    with FileLock(str(root / f"{name}.lock")):
        if failed.exists():
            pytest.fail(failed.read_text(), False)
        if not done.exists():
            parent = root / name
            shutil.rmtree(parent, ignore_errors=True)
            parent.mkdir()
            try:
                result = build(parent)
            except BaseException as err:  # pytest.fail raises an exception outside Exception
                failed.write_text(f"{name} fixture failed in worker {xdist_worker()}: {err}")
                raise
            done.write_text(str(result.relative_to(root)))
        return root / done.read_text()


def save_facts(factory: pytest.TempPathFactory, facts: dict[str, str]) -> None:
    """A worker's measured values, left for the controller's summary (no-op without xdist)."""
    worker = xdist_worker()
    if worker is None or not facts:
        return
    root = shared_root(factory)
    root.mkdir(exist_ok=True)
    (root / f"facts-{worker}.json").write_text(json.dumps(facts, indent=1))


def gather_facts(factory: pytest.TempPathFactory, facts: dict[str, str]) -> dict[str, str]:
    """``facts`` of this process plus every worker's (in the controller after an xdist run)."""
    merged = dict(facts)
    root = shared_root(factory, controller=True)
    for path in sorted(root.glob("facts-*.json")) if root.is_dir() else []:
        merged.update(json.loads(path.read_text()))
    return merged
