"""The task YAMLs of ``task_yamls/`` are exactly what the task table generates (no hand edits, nothing stale)."""

from __future__ import annotations

import importlib

import pytest

from icu_tasks.harness import task_files, task_table
from icu_tasks.paths import task_yamls_dir


def test_regenerated_yamls_equal_the_shipped_ones(tmp_path):
    """Regenerate into an empty folder: the same ``*.yaml`` files, byte for byte, as ``task_yamls/``."""
    task_files.write(tmp_path)
    shipped = {p.name: p.read_text(encoding="utf-8") for p in task_yamls_dir().glob("*.yaml")}
    regenerated = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.glob("*.yaml")}
    assert sorted(regenerated) == sorted(shipped), "task files missing from or extra in task_yamls/"
    stale = [name for name in shipped if shipped[name] != regenerated[name]]
    assert not stale, (
        f"task_yamls/ differs from the task table in {stale}: run `python -m icu_tasks.harness.task_files`"
    )
    assert task_files.main(["--check", "--out", str(task_yamls_dir())]) == 0


def test_every_hook_the_table_names_exists():
    """Each row's ``process_docs`` hook is a function of its kind's module; each template file exists."""
    for spec in task_table.TASKS:
        module, _, name = spec.process_docs.rpartition(".")
        assert callable(getattr(importlib.import_module(module), name, None)), spec.process_docs
        assert (task_yamls_dir() / task_table.KINDS[spec.kind].template).is_file(), spec.kind
    assert all(group.tasks() for group in task_table.GROUPS)


def test_check_names_changed_and_stale_files_and_write_repairs_them(tmp_path, capsys):
    task_files.write(tmp_path)
    (tmp_path / "icu_forget_qa.yaml").write_text("task: icu_forget_qa\n")
    stale = tmp_path / "icu_gone.yaml"
    stale.write_text(task_files.HEADER + "\ntask: icu_gone\n")
    hand_written = tmp_path / "mine.yaml"  # no header: not ours, never removed
    hand_written.write_text("task: mine\n")

    assert task_files.main(["--check", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "icu_forget_qa.yaml" in out and "icu_gone.yaml" in out and "mine.yaml" not in out
    assert task_files.write(tmp_path) == ["icu_forget_qa.yaml", "icu_gone.yaml"]
    assert not stale.exists() and hand_written.exists()
    assert task_files.differences(tmp_path) == []


@pytest.mark.parametrize("check", [False, True])
def test_a_folder_that_is_not_one_fails_with_one_line(tmp_path, capsys, check):
    target = tmp_path / "nope"
    assert task_files.main(["--out", str(target), *(["--check"] if check else [])]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {target} is not a directory\n"
    assert not target.exists()


#: Hand-picked directions (``higher_is_better``) that lmms-eval reads for a task, include resolved.
EXPECTED_DIRECTIONS = {
    "icu_forget_vqa": {"exact_match": False, "contains": False, "rougeL_recall": False},
    "icu_retain_qa_para": {"exact_match": True, "rougeL_recall": True},
    "icu_holdout_qa": {"exact_match": None},
    "icu_utility_mc": {"mc_accuracy": True},
    "icu_forget_vqa_mc": {"mc_accuracy": False},
    "icu_ll_forget_qa": {"answer_prob": False, "truth_ratio": True, "truth_ratio_mean": True},
    "icu_ll_retain_vqa": {"answer_prob": True, "truth_ratio": True, "truth_ratio_mean": False},
    "icu_ll_holdout_vqa": {"answer_prob": None, "truth_ratio": None},
    "icu_mia_qa": {
        "mia_privacy_loss": True,
        "mia_privacy_zlib": True,
        "mia_auc_loss": None,
        "mia_gap_zlib": None,
    },
    "icu_longform_forget": {
        "longform_leakage": False,
        "longform_entropy": True,
        "longform_repetition": False,
    },
    "icu_longform_retain": {"longform_leakage": True, "longform_repetition": False},
}


def _lmms_directions(task: str) -> dict[str, bool | None]:
    """``metric -> higher_is_better`` as lmms-eval's own loader resolves the task file and its includes."""
    from lmms_eval.utils import load_yaml_config

    config = load_yaml_config(str(task_yamls_dir() / f"{task}.yaml"), mode="simple")
    return {m["metric"]: m["higher_is_better"] for m in config["metric_list"]}


def test_each_task_says_which_way_is_better():
    """Forget tasks reward less knowledge, retain and utility tasks more, holdout tasks (the base rate) and the
    two-sided membership AUC neither; every metric of every task resolves to the table's direction."""
    for task, expected in EXPECTED_DIRECTIONS.items():
        directions = _lmms_directions(task)
        assert {m: directions[m] for m in expected} == expected, task
    for spec in task_table.TASKS:
        directions = _lmms_directions(spec.name)
        assert list(directions) == list(task_table.KINDS[spec.kind].metrics), spec.name
        assert directions == {m: spec.direction(m) for m in directions}, spec.name
