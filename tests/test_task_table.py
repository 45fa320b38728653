"""The task YAMLs of ``task_yamls/`` are exactly what the task table generates (no hand edits, nothing stale)."""

from __future__ import annotations

import importlib

import pytest

from icu_tasks.harness import task_table
from icu_tasks.paths import task_yamls_dir


def test_regenerated_yamls_equal_the_shipped_ones(tmp_path):
    """Regenerate into an empty folder: the same ``*.yaml`` files, byte for byte, as ``task_yamls/``."""
    task_table.write(tmp_path)
    shipped = {p.name: p.read_text(encoding="utf-8") for p in task_yamls_dir().glob("*.yaml")}
    regenerated = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.glob("*.yaml")}
    assert sorted(regenerated) == sorted(shipped), "task files missing from or extra in task_yamls/"
    stale = [name for name in shipped if shipped[name] != regenerated[name]]
    assert not stale, (
        f"task_yamls/ differs from the task table in {stale}: run `python -m icu_tasks.harness.task_table`"
    )
    assert task_table.main(["--check", "--out", str(task_yamls_dir())]) == 0


def test_every_hook_the_table_names_exists():
    """Each row's ``process_docs`` hook is a function of its kind's module; each template file exists."""
    for spec in task_table.TASKS:
        module, _, name = spec.process_docs.rpartition(".")
        assert callable(getattr(importlib.import_module(module), name, None)), spec.process_docs
        assert (task_yamls_dir() / task_table.KINDS[spec.kind].template).is_file(), spec.kind
    assert all(group.tasks() for group in task_table.GROUPS)


def test_check_names_changed_and_stale_files_and_write_repairs_them(tmp_path, capsys):
    task_table.write(tmp_path)
    (tmp_path / "icu_forget_qa.yaml").write_text("task: icu_forget_qa\n")
    stale = tmp_path / "icu_gone.yaml"
    stale.write_text(task_table.HEADER + "\ntask: icu_gone\n")
    hand_written = tmp_path / "mine.yaml"  # no header: not ours, never removed
    hand_written.write_text("task: mine\n")

    assert task_table.main(["--check", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "icu_forget_qa.yaml" in out and "icu_gone.yaml" in out and "mine.yaml" not in out
    assert task_table.write(tmp_path) == ["icu_forget_qa.yaml", "icu_gone.yaml"]
    assert not stale.exists() and hand_written.exists()
    assert task_table.differences(tmp_path) == []


@pytest.mark.parametrize("check", [False, True])
def test_a_folder_that_is_not_one_fails_with_one_line(tmp_path, capsys, check):
    target = tmp_path / "nope"
    assert task_table.main(["--out", str(target), *(["--check"] if check else [])]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {target} is not a directory\n"
    assert not target.exists()
