"""Shared pytest set-up: session-scoped fixtures live in ``tests/fixtures_*.py`` (one module per layer).

The tiny model, the small data set and the fine-tuned (vanilla) model are built once per test session.

Determinism policy (the same on every machine, whatever the caller's environment):

* **threads**: :data:`TEST_THREADS` intra-op threads, set explicitly for this process
  (``torch.set_num_threads``) and, through ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``, for every subprocess the
  tests start (a data-parallel test that runs several processes sets its own, one per process);
* ``torch.use_deterministic_algorithms(True, warn_only=True)`` in this process: an operation without a
  deterministic implementation warns (pytest's warnings summary lists it) instead of failing the test; the
  processes the tests start do not set it;
* **hermetic**: no hub, no telemetry, no GPU; every cache a library writes (Hugging Face datasets and hub,
  matplotlib, XDG) goes to pytest's temporary dir of the session, never to the home directory.

The header of the run (or, under ``-q``, the summary) prints the package versions, the thread count and the
CPU capability; the summary at the end prints the fixture data hash and the vanilla model's stopping step and scores, so that two machines'
logs can be compared line by line, and the modules that took the most worker time.
"""

from __future__ import annotations

import collections
import importlib.metadata
import importlib.util
import os
from pathlib import Path

import pytest

#: Intra-op threads of every test process: two cores is the machine the suite is written for; under
#: pytest-xdist (``-n 2``) each worker takes one core.
TEST_THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2
#: Packages whose versions the header prints (they decide the generated data and the trained weights).
VERSIONED = (
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "datasets",
    "lmms_eval",
    "tokenizers",
    "Faker",
    "pillow",
    "numpy",
    "pyarrow",
)

_HERMETIC_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "CUDA_VISIBLE_DEVICES": "",
    "OMP_NUM_THREADS": str(TEST_THREADS),
    "MKL_NUM_THREADS": str(TEST_THREADS),
}
os.environ.update(_HERMETIC_ENV)

_FIXTURE_MODULES = ("tests.fixtures_data", "tests.fixtures_model", "tests.fixtures_unlearn")
pytest_plugins = [m for m in _FIXTURE_MODULES if importlib.util.find_spec(m) is not None]


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Point every cache at the session's tmp dir and pin torch's threads and determinism."""
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is not None and not hasattr(config, "workerinput"):
        cache = factory.mktemp("caches", numbered=False)
        os.environ.update(
            HF_HOME=str(cache / "hf"),
            HF_DATASETS_CACHE=str(cache / "hf" / "datasets"),
            MPLCONFIGDIR=str(cache / "matplotlib"),
            XDG_CACHE_HOME=str(cache / "xdg"),
        )
    import torch

    torch.set_num_threads(TEST_THREADS)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Versions, threads and CPU capability: what makes two machines' numbers differ."""
    import torch

    versions = " ".join(f"{n}={_version(n)}" for n in VERSIONED)
    return [
        f"icu-bench: {versions}",
        f"icu-bench: torch threads={torch.get_num_threads()} (TEST_THREADS={TEST_THREADS}), "
        f"cpu capability={torch.backends.cpu.get_cpu_capability()}, os.cpu_count={os.cpu_count()}",
    ]


#: Worker seconds per test module (setup + call + teardown of its tests), summed where the summary is printed:
#: under pytest-xdist the controller receives every worker's reports.
_MODULE_SECONDS: collections.Counter[str] = collections.Counter()
#: How many modules the summary names.
SLOWEST_MODULES = 12


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _MODULE_SECONDS[report.nodeid.split("::")[0]] += report.duration


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """The fixtures' identity: data hash, and the vanilla model's stopping step and scores (if built); the
    modules that took the most worker time (a module that waited for a shared fixture counts the wait)."""
    from tests.fixtures_unlearn import FIXTURE_FACTS
    from tests.shared_build import gather_facts

    if config.get_verbosity() < 0:  # ``-q`` hides the header: print it here instead
        for line in pytest_report_header(config):
            terminalreporter.write_line(line)
    factory = getattr(config, "_tmp_path_factory", None)
    facts = gather_facts(factory, FIXTURE_FACTS) if factory is not None else FIXTURE_FACTS
    for key, value in facts.items():
        terminalreporter.write_line(f"icu-bench fixture {key}: {value}")
    if _MODULE_SECONDS:
        top = ", ".join(f"{Path(m).name} {s:.0f}" for m, s in _MODULE_SECONDS.most_common(SLOWEST_MODULES))
        total = sum(_MODULE_SECONDS.values())
        terminalreporter.write_line(f"icu-bench worker seconds by module (of {total:.0f} in all): {top}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """An xdist worker leaves its measured values for the controller's summary."""
    from tests.fixtures_unlearn import FIXTURE_FACTS
    from tests.shared_build import save_facts

    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None:
        save_facts(factory, FIXTURE_FACTS)


# ----------------------------------------------------------------------------------------------- test tiers

#: Fixtures that build or train a model: a test that requests one (directly or through another fixture) is
#: marked ``model`` at collection.
MODEL_FIXTURES = frozenset({"tiny_model_dir", "vanilla_model_dir", "vanilla_knowledge", "qwen_dir"})
#: Where the guard writes the tests that started a process instead of failing them (``ICU_RECORD_PROCESSES``).
RECORD_ENV = "ICU_RECORD_PROCESSES"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``model`` every test that uses a model fixture (the rest of the unmarked tests form the unit tier),
    and run the modules that build, train or start something before the unit-tier-only modules.

    Under pytest-xdist the suite runs with ``--dist loadscope`` (pyproject's ``addopts``): a module (or a test
    class) is one unit of work, so a module- or class-scoped fixture (a scored run, a CLI run) is built once,
    not once per worker that happens to get one of its tests; the units are handed out in this order, so the
    long ones start first and the short unit-tier modules fill the end of both workers' queues."""
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.model)
    heavy = {item.nodeid.split("::")[0] for item in items if not _unit_tier(item)}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in heavy)  # stable: module order kept


def _unit_tier(item: pytest.Item) -> bool:
    return not any(item.get_closest_marker(m) for m in ("model", "slow", "subprocess"))


@pytest.fixture(autouse=True)
def _unit_tests_start_no_process(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit-tier test (no ``model``, ``slow`` or ``subprocess`` mark) that starts a process fails, so
    ``make test-fast`` stays what it says; with ``$ICU_RECORD_PROCESSES`` set, the test ids are appended to that
    file instead."""
    if not _unit_tier(request.node):
        return
    import subprocess

    original = subprocess.Popen.__init__
    record = os.environ.get(RECORD_ENV)
    nodeid = request.node.nodeid

    def guarded(self, *args, **kwargs):
        if not record:
            raise AssertionError(f"{nodeid} starts a process: mark it @pytest.mark.subprocess")
        with open(record, "a", encoding="utf-8") as fh:
            fh.write(nodeid + "\n")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)
