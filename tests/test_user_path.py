"""The user's path around the commands: outputs readable by the group (they follow the umask), the version in
``--version`` and in every record, the torchvision clash told in one line, the demo's per-phase durations."""

from __future__ import annotations

import json
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from icu_tasks.records.files import WRITER_KEY, icu_bench_version, read_record, write_record
from icu_tasks.records.layout import RUN_JSON, atomic_dir, atomic_write_text, current_umask
from tests.cli_helpers import call_cli


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _modes(root: Path) -> set[tuple[str, int]]:
    """(kind, permission bits) of ``root`` and everything under it."""
    paths = [root, *root.rglob("*")]
    return {("dir" if p.is_dir() else "file", stat.S_IMODE(p.stat().st_mode)) for p in paths}


def test_current_umask_is_the_process_umask(umask_022: None) -> None:
    assert current_umask() == 0o022
    os.umask(0o027)
    assert current_umask() == 0o027


def test_atomic_writers_follow_the_umask(umask_022: None, tmp_path: Path) -> None:
    """0755 dirs and 0644 files under umask 022, also for a file a library wrote through mkstemp (0600)."""
    atomic_write_text(tmp_path / "report.md", "# report\n")
    with atomic_dir(tmp_path / "stage_1") as tmp:
        (tmp / "stage.json").write_text("{}\n")
        fd, private = tempfile.mkstemp(dir=tmp)  # as safetensors / transformers save their weights
        os.close(fd)
        os.replace(private, tmp / "model.safetensors")
    assert stat.S_IMODE((tmp_path / "report.md").stat().st_mode) == 0o644
    assert _modes(tmp_path / "stage_1") == {("dir", 0o755), ("file", 0o644)}


def test_a_stricter_umask_is_kept(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        atomic_write_text(tmp_path / "private.md", "x\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "private.md").stat().st_mode) == 0o600


def test_generated_data_and_tiny_model_follow_the_umask(
    umask_022: None, tmp_path: Path, tiny_model_dir: Path
) -> None:
    """The generator's and the tiny-model builder's dirs (both made through mkdtemp) are readable by all."""
    from icu_tasks.data.generate import generate

    generate(tmp_path / "data", profiles=12, tasks=2, profiles_per_task=2, image_size=96, progress=False)
    assert _modes(tmp_path / "data") == {("dir", 0o755), ("file", 0o644)}
    expected = {("dir", 0o777 & ~current_umask()), ("file", 0o666 & ~current_umask())}
    assert _modes(tiny_model_dir) == expected  # built by the session fixture under the session's umask


def test_version_flag_and_records_carry_the_version(tmp_path: Path) -> None:
    proc = call_cli(["--version"], cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == f"icu-bench {icu_bench_version()}"
    write_record(tmp_path / RUN_JSON, {"method": "ga"})
    assert read_record(tmp_path / RUN_JSON)[WRITER_KEY] == icu_bench_version() != "not installed"


@pytest.mark.parametrize(
    ("torch", "torchvision", "clash"),
    [
        ("2.13.0+cpu", "0.28.0+cu130", "is a cu130 build, torch 2.13.0+cpu a cpu build"),
        ("2.13.0+cpu", "0.29.1+cpu", "is made for torch 2.14, not 2.13.0+cpu"),
        ("2.13.0+cpu", "0.28.0+cpu", None),
        ("2.14.1+cu130", "0.29.1+cu130", None),
        ("2.14.1", "0.29.1", None),
    ],
)
def test_torchvision_clash(torch: str, torchvision: str, clash: str | None) -> None:
    from icu_tasks.harness.torchvision_check import torchvision_clash

    why = torchvision_clash(torch, torchvision)
    assert why == clash if clash is None else clash in why


def test_installed_torch_and_torchvision_fit() -> None:
    """This environment passes the check (the Makefile removes the clashing CUDA torchvision)."""
    from icu_tasks.harness.torchvision_check import check_torchvision

    check_torchvision()


def test_demo_records_durations_per_phase(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from icu_unlearn.cli.run import PhaseClock

    now = iter([100.0, 100.0, 110.0, 130.0, 131.5])
    monkeypatch.setattr(time, "perf_counter", lambda: next(now))
    clock = PhaseClock(("data", "tiny_model", "finetune"))
    clock.step(1, "data")
    clock.step(2, "tiny")
    clock.step(3, "finetune")
    assert clock.finish() == {"data": 10.0, "tiny_model": 20.0, "finetune": 1.5}
    assert "[3/3    30 s] finetune" in capsys.readouterr().out
    assert json.dumps(clock.phases)


def test_one_vocabulary_for_hyper_parameters_and_the_model_dir(tmp_path: Path) -> None:
    """``--set`` takes the short names of the flags; ``--base`` (the older spelling of ``--model``) still works."""
    from icu_unlearn.cli import build_parser
    from icu_unlearn.cli.args import parse_sets

    assert parse_sets(["lr=1e-3", "steps=5", "retain-weight=2"]) == {
        "learning_rate": "1e-3",
        "max_steps": 5,
        "retain_weight": 2,
    }
    parser = build_parser()
    for flag in ("--model", "--base"):
        args = parser.parse_args(
            ["unlearn", "--method", "ga", flag, "M", "--data", "D", "--stage", "1", "--out", "O"]
        )
        assert args.model == "M"
    run = parser.parse_args(["run", "--out", "O", "--batch-size", "4", "--device", "auto", "-q"])
    assert (run.batch_size, run.device, run.quiet) == (4, "auto", True)
    assert parser.parse_args(["run", "--out", "O", "--eval-batch-size", "8"]).batch_size == 8
    proc = call_cli(["unlearn", "--method", "ga", "--data", "D", "--stage", "1", "--out", "O"], cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr == "error: the model dir is required: pass --model DIR\n"


def test_quiet_turns_off_the_scoring_bars(monkeypatch):
    """``icu_hf``'s own bars follow ``--quiet`` (``TQDM_DISABLE``), which an explicit ``disable=False`` in a
    tqdm call would override."""
    from icu_unlearn.scoring.icu_hf import _no_bar

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert (_no_bar(0), _no_bar(1)) == (False, True)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert _no_bar(0) is True
