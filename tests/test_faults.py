"""Faults: kill -9 while a stage dir is written, a full disk, two processes on one run dir.

A stage dir must be complete or absent whatever happens; leftovers of a killed writer are removed by the next
run (``RunDir.clean_partial``) or the next write of the same stage (``run_layout.clean_stale``); a full disk is one
error line with nothing left behind; a second process on a run dir is refused before any expensive work.
(Kill during scoring and resume are tested in ``tests/test_pipeline.py``.)
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from icu_tasks.errors import StageError
from tests.cli_helpers import CLI, assert_one_error, cli_env, run_cli, snapshot

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

#: A writer of RUN/stage_1 (argv[1]) through the real ``write_stage``, whose adapter save stops half-way
#: (mode "saving") or that finishes and then waits (mode "renamed"), so the test can SIGKILL it right there.
WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from icu_unlearn.training.stage_dir import write_stage

    class HalfSavedAdapter:
        def save_pretrained(self, path):
            (Path(path) / "adapter_config.json").write_text("{}")
            with open(Path(path) / "adapter_model.safetensors", "wb") as fh:
                fh.write(b"\\0" * 4096)
                fh.flush()
                if sys.argv[2] == "saving":
                    print("SAVING", flush=True)
                    time.sleep(120)

    write_stage(Path(sys.argv[1]) / "stage_1", HalfSavedAdapter(), {}, {}, {"stage": 1})
    print("RENAMED", flush=True)
    time.sleep(120)
    """
)


def _kill_writer(run: Path, mode: str) -> None:
    """Start the writer, wait for its signal line, SIGKILL it and reap it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(run), mode], stdout=subprocess.PIPE, text=True, env=cli_env()
    )
    try:
        line = proc.stdout.readline().strip()
        assert line == {"saving": "SAVING", "renamed": "RENAMED"}[mode], line
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL


def _fill(tmp: Path) -> None:
    (tmp / "adapter_model.safetensors").write_bytes(b"weights")
    (tmp / "stage.json").write_text(json.dumps({"stage": 1}))


@pytest.mark.subprocess
def test_kill_during_adapter_saving_leaves_no_stage_dir(tmp_path: Path) -> None:
    from icu_unlearn.pipeline.rundir import RunDir

    run = tmp_path / "run"
    _kill_writer(run, "saving")
    assert not (run / "stage_1").exists()
    leftovers = list(run.glob(".tmp-stage_1-*"))
    assert len(leftovers) == 1 and (leftovers[0] / "adapter_model.safetensors").is_file()
    assert RunDir(run).clean_partial() == leftovers  # what `icu-bench run` does first on a restart
    assert sorted(p.name for p in run.iterdir()) == []


@pytest.mark.subprocess
def test_next_write_removes_a_killed_writers_leftovers(tmp_path: Path) -> None:
    """The shell loop (``icu-bench unlearn``) has no run lock; the next write of the stage cleans up."""
    from icu_tasks.records.layout import write_dir_atomically

    run = tmp_path / "run"
    _kill_writer(run, "saving")
    assert list(run.glob(".tmp-stage_1-*"))
    write_dir_atomically(run / "stage_1", _fill)
    assert sorted(p.name for p in run.iterdir()) == ["stage_1"]
    assert sorted(p.name for p in (run / "stage_1").iterdir()) == ["adapter_model.safetensors", "stage.json"]


def test_temp_dirs_of_live_writers_are_kept(tmp_path: Path) -> None:
    from icu_tasks.records.layout import clean_stale

    live = tmp_path / f".tmp-stage_1-{os.getpid()}-abc"
    foreign = tmp_path / ".tmp-stage_1-abcdefgh"  # no pid in the name: not ours to judge
    other_stage = tmp_path / ".tmp-stage_10-999999999-abc"
    for p in (live, foreign, other_stage):
        p.mkdir()
    assert clean_stale(tmp_path / "stage_1") == []
    assert all(p.is_dir() for p in (live, foreign, other_stage))


@pytest.mark.subprocess
def test_kill_right_after_the_rename_leaves_a_complete_stage_dir(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _kill_writer(run, "renamed")
    stage = run / "stage_1"
    assert sorted(p.name for p in stage.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "stage.json",
    ]
    assert json.loads((stage / "stage.json").read_text())["files"][-1] == "stage.json"
    assert sorted(p.name for p in run.iterdir()) == ["stage_1"]


# ----------------------------------------------------------------------------------------------- disk full


def _raise_enospc(*args: object, **kwargs: object) -> None:
    raise ENOSPC


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    from icu_tasks.records import layout as run_layout

    path = tmp_path / "report" / "report.md"
    run_layout.atomic_write_text(path, "old\n")

    def half_then_full(tmp: Path) -> None:
        tmp.write_text("half a rep", encoding="utf-8")
        raise ENOSPC

    with pytest.raises(OSError) as info:
        run_layout.atomic_write(path, half_then_full)
    assert info.value.errno == errno.ENOSPC
    assert path.read_text(encoding="utf-8") == "old\n"
    assert [p.name for p in path.parent.iterdir()] == ["report.md"]  # the temp file is gone


def test_atomic_write_json_is_the_stage_record_format(tmp_path: Path) -> None:
    from icu_tasks.records import layout as run_layout

    payload = {"b": 1, "a": [1.5, None], "path": Path("/x")}
    path = run_layout.atomic_write_json(tmp_path / "new" / "r.json", payload)
    run_layout.write_json(tmp_path / "plain.json", payload)
    expected = '{\n  "a": [\n    1.5,\n    null\n  ],\n  "b": 1,\n  "path": "/x"\n}\n'
    assert path.read_text(encoding="utf-8") == expected
    assert (tmp_path / "plain.json").read_text(encoding="utf-8") == expected


def test_disk_full_while_writing_a_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import icu_unlearn.training.stage_dir as stage

    monkeypatch.setattr(stage, "write_json", _raise_enospc)
    final = tmp_path / "run" / "stage_1"

    class Adapter:
        def save_pretrained(self, path: str) -> None:
            (Path(path) / "adapter_model.safetensors").write_bytes(b"weights")

    with pytest.raises(StageError, match=r"cannot write .*stage_1: No space left on device"):
        stage.write_stage(final, Adapter(), {}, {}, {"stage": 1})
    assert list(tmp_path.iterdir()) == []  # no stage, no temp dir, and the run dir it created is gone too


def test_disk_full_inside_safetensors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """safetensors raises its own SafetensorError (not OSError) when the disk fills up."""
    import safetensors.torch
    import torch
    from safetensors import SafetensorError

    import icu_unlearn.training.stage_dir as stage
    from icu_tasks.records import layout as run_layout

    def full(*args: object, **kwargs: object) -> None:
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    (tmp_path / "run").mkdir()
    final = tmp_path / "run" / "stage_1"

    def fill(tmp: Path) -> None:
        stage.save_safetensors({"x": torch.zeros(2)}, tmp / "saliency.safetensors")

    with pytest.raises(StageError, match="No space left on device"):
        run_layout.write_dir_atomically(final, fill)
    assert list((tmp_path / "run").iterdir()) == []


def test_disk_full_while_generating_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import icu_tasks.data.generate as gen
    from tests.fixtures_data import SMALL_SCALE

    monkeypatch.setattr(gen.pq, "write_table", _raise_enospc)
    with pytest.raises(OSError) as info:
        gen.generate(tmp_path / "data", workers=1, progress=False, **SMALL_SCALE)
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


@pytest.mark.subprocess
def test_disk_full_through_the_cli_is_one_line(tmp_path: Path) -> None:
    script = (
        "import errno, os, sys, pyarrow.parquet as pq\n"
        "def full(*a, **k): raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
        "pq.write_table = full\n"
        "from icu_unlearn.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    args = ["data", "generate", "--out", str(tmp_path / "data"), "--profiles", "4", "--tasks", "1"]
    args += ["--profiles-per-task", "1", "--image-size", "96", "--quiet"]
    proc = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=tmp_path, env=cli_env(), capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert_one_error(proc, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(
    not _unshare_works(), reason="needs `unshare -rm` (user + mount namespaces) to mount a tmpfs"
)
@pytest.mark.parametrize("command", ["generate", "unlearn"])
def test_real_full_disk_on_a_small_tmpfs(
    command: str, tmp_path: Path, tiny_model_dir: Path, small_data_dir: Path
) -> None:
    """The real thing: the CLI writes to a 128 KiB tmpfs (private mount namespace) and runs out of space."""
    mnt, report = tmp_path / "mnt", tmp_path / "report"
    mnt.mkdir()
    if command == "generate":
        args = ["data", "generate", "--out", f"{mnt}/data", "--profiles", "24", "--tasks", "3"]
        args += ["--profiles-per-task", "2", "--image-size", "160", "--quiet"]
    else:
        args = ["unlearn", "--method", "ga", "--base", str(tiny_model_dir), "--data", str(small_data_dir)]
        args += [
            "--stage",
            "1",
            "--out",
            f"{mnt}/run",
            "--max-steps",
            "1",
            "--batch-size",
            "2",
            "--device",
            "cpu",
        ]
    cli = " ".join(f"'{a}'" for a in [*CLI, *args])
    script = f"mount -t tmpfs -o size=128k tmpfs '{mnt}' && {cli} 2>'{report}.err' >/dev/null; "
    script += f"echo $? > '{report}.rc'; find '{mnt}' -mindepth 1 > '{report}.left'"
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], env=cli_env(), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "report.rc").read_text().strip() == "2"
    err = (tmp_path / "report.err").read_text()
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0], err
    assert err.rstrip().endswith(errors[0])
    assert (tmp_path / "report.left").read_text() == ""  # nothing at all left on the full disk


# ----------------------------------------------------------------------------------------------- run lock

HOLDER = (
    "import sys, time\n"
    "from icu_unlearn.pipeline.rundir import RunDir\n"
    "with RunDir(sys.argv[1]).lock():\n"
    "    print('LOCKED', flush=True)\n"
    "    time.sleep(300)\n"
)


def test_second_process_on_a_run_dir_is_refused(
    tmp_path: Path, tiny_model_dir: Path, small_data_dir: Path
) -> None:
    """Cross-process lock, checked before any model is loaded (the untrained tiny model is never touched)."""
    from icu_unlearn.pipeline.rundir import RunDir

    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "LOCKED"
        before = snapshot(out, tiny_model_dir, small_data_dir)
        args = ["run", "--base", str(tiny_model_dir), "--data", str(small_data_dir), "--stages", "1"]
        proc = run_cli([*args, "--method", "ga", "--out", str(out)], cwd=tmp_path / "cwd", timeout=120)
        assert_one_error(proc, f"run dir {out} is in use by pid {holder.pid}")
        assert proc.returncode == 2
        assert snapshot(out, tiny_model_dir, small_data_dir) == before
    finally:
        holder.kill()
        holder.wait(timeout=30)
        holder.stdout.close()
    with RunDir(out).lock():  # the holder died: its flock died with it, no stale lock
        assert (out / ".lock").read_text() == f"pid {os.getpid()}"
