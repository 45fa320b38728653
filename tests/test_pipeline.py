"""The continual pipeline: kill -9 + resume == the shell loop, refused configs, the run lock.

Two runs of the same config: ``icu-bench run`` killed twice (while stage 1 trains, while it is scored) and
resumed to the end, and ``examples/continual_loop.sh`` (unlearn, then the ``lmms-eval`` CLI, per stage), started
in the background first so that the two overlap. Both must give the same files and the identical matrices:
the resumed run equals an uninterrupted one, and the one-process run equals the shell loop. (The in-process
``icu_unlearn.pipeline.run.run`` is covered by ``test_schedule`` and ``test_trust``.) All runs use the session's
fine-tuned tiny model, GA with a few steps (the method does not matter here: these tests are about
orchestration) and ``limit`` docs per task to keep the lmms-eval passes short.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from icu_tasks.errors import StageError
from tests.subprocess_env import OVERLAPPED, Started

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
STAGES, LIMIT, METHOD, STEPS = 2, 8, "ga", 6


def _env() -> dict[str, str]:
    """The runs of this module overlap with the shell loop (``OVERLAPPED``)."""
    return os.environ | {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PYTHONUNBUFFERED": "1",
        **OVERLAPPED,
    }


def _run_cmd(vanilla: Path, data: Path, out: Path) -> list[str]:
    return [
        str(BIN / "icu-bench"), "run", "--base", str(vanilla), "--data", str(data), "--method", METHOD,
        "--stages", str(STAGES), "--limit", str(LIMIT), "--set", f"max_steps={STEPS}", "--out", str(out),
    ]  # fmt: skip


def _matrices(run_dir: Path) -> dict[str, np.ndarray]:
    from icu_tasks.report.results import load_run

    run = load_run(run_dir)
    assert not run.missing, run.missing
    return {
        "forget_vqa": run.forget["vqa"],
        "forget_qa": run.forget["qa"],
        "retain": run.retain,
        "utility": run.utility,
    }


def _eval_files(run_dir: Path, stage: int) -> list[str]:
    """The names of a stage's lmms-eval files without their date-time prefix."""
    return sorted(p.name.split("_", 2)[-1] for p in (run_dir / "eval" / f"stage_{stage}").rglob("*.json*"))


def _assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.fixture(scope="module")
def shell_loop(tmp_path_factory, vanilla_model_dir: Path, small_data_dir: Path):
    """``examples/continual_loop.sh`` (unlearn, then ``lmms-eval``, per stage) with ``_run_cmd``'s settings,
    started in the background before the killed-and-resumed run so that the two overlap; returns
    ``(started process, its output dir)``."""
    tmp = tmp_path_factory.mktemp("shell_loop")
    out = tmp / "shell"
    cmd = ["bash", str(REPO / "examples" / "continual_loop.sh"), str(vanilla_model_dir), str(small_data_dir)]
    cmd += [str(out), METHOD, str(STAGES), "--", "--max-steps", str(STEPS)]
    run = Started(cmd, tmp / "logs", env=_env() | {"LIMIT": str(LIMIT)})
    yield run, out
    run.kill()


def _wait_for(proc: subprocess.Popen, condition, what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(
                f"run ended (rc {proc.returncode}) before {what}: {proc.stdout.read()[-2000:]}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory, vanilla_model_dir: Path, small_data_dir: Path, shell_loop) -> dict:
    """``icu-bench run`` killed with SIGKILL twice and resumed to the end; returns its dir and what was seen."""
    out = tmp_path_factory.mktemp("pipeline") / "killed"
    cmd = _run_cmd(vanilla_model_dir, small_data_dir, out)
    popen = dict(env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: dict = {"dir": out}

    # 1. kill -9 while stage 1 trains (stage 0 scored, stage 1 not yet written).
    proc = subprocess.Popen(cmd, **popen)
    _wait_for(proc, lambda: (out / "eval" / "stage_0").is_dir(), "stage 0 was scored")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    seen["stage_1_after_kill_1"] = (out / "stage_1").exists()

    # 2. restart; kill -9 while stage 1 is being scored.
    proc = subprocess.Popen(cmd, **popen)
    _wait_for(proc, lambda: any((out / "eval").glob(".tmp-stage_1*")), "stage 1 scoring started")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    seen["after_kill_2"] = ((out / "stage_1" / "stage.json").is_file(), (out / "eval" / "stage_1").exists())
    seen["stage_1_mtime"] = (out / "stage_1" / "adapter_model.safetensors").stat().st_mtime_ns

    # 3. restart to the end.
    seen["final"] = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=1200)
    return seen


def test_kill_and_resume_recovers_without_recomputing(resumed_run: dict) -> None:
    out = resumed_run["dir"]
    assert resumed_run["stage_1_after_kill_1"] is False  # killed while training: no half-written stage dir
    assert resumed_run["after_kill_2"] == (True, False)  # stage 1 complete, its half-scored eval not renamed
    proc = resumed_run["final"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "half-written" in proc.stdout
    assert (out / "stage_1" / "adapter_model.safetensors").stat().st_mtime_ns == resumed_run["stage_1_mtime"]
    assert not list(out.rglob(".tmp-*")), "temp dirs left behind"


def test_resumed_run_writes_stages_evals_and_report(resumed_run: dict) -> None:
    out = resumed_run["dir"]
    assert resumed_run["final"].returncode == 0, resumed_run["final"].stderr[-3000:]
    for k in range(1, STAGES + 1):
        assert (out / f"stage_{k}" / "adapter_model.safetensors").is_file()
        assert json.loads((out / f"stage_{k}" / "stage.json").read_text())["method"] == METHOD
    for k in range(STAGES + 1):
        assert list((out / "eval" / f"stage_{k}").rglob("*_results.json"))
        assert len(list((out / "eval" / f"stage_{k}").rglob("*_samples_icu_*.jsonl"))) == 7  # the icu group
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["runs"][0]["method"] == METHOD


def test_changed_config_is_refused(resumed_run: dict, vanilla_model_dir, small_data_dir) -> None:
    run_dir = resumed_run["dir"]
    before = (run_dir / "run.json").read_bytes()
    cmd = _run_cmd(vanilla_model_dir, small_data_dir, run_dir)
    cmd[cmd.index("--stages") + 1] = "1"
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "different config" in lines[0] and "stages" in lines[0], proc.stderr
    assert (run_dir / "run.json").read_bytes() == before


def test_second_process_on_a_locked_run_dir_is_refused(tmp_path, vanilla_model_dir, small_data_dir) -> None:
    from icu_unlearn.pipeline.rundir import RunDir

    out = tmp_path / "locked"
    with RunDir(out).lock():
        proc = subprocess.run(
            _run_cmd(vanilla_model_dir, small_data_dir, out),
            env=_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: run dir") and "in use" in proc.stderr
    assert not (out / "run.json").exists() and not (out / "eval").exists()


def test_lock_is_exclusive_in_process(tmp_path) -> None:
    from icu_unlearn.pipeline.rundir import RunDir

    with RunDir(tmp_path).lock(), pytest.raises(StageError, match="in use"), RunDir(tmp_path).lock():
        pass


# Last in the module: the shell loop started with the module runs alongside the tests above.
def test_shell_loop_gives_the_same_files_and_scores(resumed_run: dict, shell_loop) -> None:
    run, out = shell_loop
    proc = run.result(timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "report" / "report.md").is_file()
    resumed = resumed_run["dir"]
    # Same files in the same layout (lmms-eval's model sub-folder), same scores.
    for k in range(STAGES + 1):
        assert _eval_files(out, k) == _eval_files(resumed, k), k
    _assert_same(_matrices(out), _matrices(resumed))
