"""``icu-bench tasks install|uninstall|status``: the ICU tasks inside lmms-eval's own task folder.

Most tests install into a temporary "lmms-eval task folder" (``--target`` / ``tasks_dir``). The two slow tests
run the literal ``lmms-eval --tasks icu_forget_vqa --model icu_hf ...`` from a directory outside the checkout,
without ``--include_path``, against the real installed lmms-eval; they install or uninstall for real and put
back the state they found.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from icu_tasks.errors import ConfigError
from icu_tasks.harness import install as inst
from icu_tasks.paths import task_yamls_dir
from tests.cli_helpers import assert_one_error, run_cli

LMMS_EVAL = [sys.executable, "-m", "lmms_eval"]
SOURCE_FILES = inst.source_files(task_yamls_dir())


def _lmms_env(tmp_path: Path, data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("LMMS_EVAL_PLUGINS", None)
    env.update(
        ICU_DATA_DIR=str(data_dir),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_CACHE=str(tmp_path / "hf_datasets"),
        TOKENIZERS_PARALLELISM="false",
        CUDA_VISIBLE_DEVICES="",
    )
    return env


def test_install_links_every_file_marks_the_folder_and_is_idempotent(tmp_path):
    folder = tmp_path / inst.INSTALL_DIRNAME
    source = task_yamls_dir().resolve()
    assert inst.install(tmp_path) == (
        f"installed {len(SOURCE_FILES)} task files into {folder} (symlinks to {source})"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [inst.INSTALL_DIRNAME]  # no temp leftovers
    assert folder.is_dir() and not folder.is_symlink()  # os.walk does not enter a symlinked folder
    for name in SOURCE_FILES:
        assert (folder / name).is_symlink() and (folder / name).resolve() == source / name
    marker = json.loads((folder / inst.MARKER).read_text())
    assert marker["files"] == SOURCE_FILES and marker["source"] == str(source)
    assert {"icu.yaml", "_icu_common_yaml", "_stub.jsonl"} <= set(SOURCE_FILES)
    assert inst.status(tmp_path).installed

    assert inst.install(tmp_path) == (
        f"ICU-Bench tasks already installed: {len(SOURCE_FILES)} task files in {folder}"
    )
    assert inst.uninstall(tmp_path) == f"removed {len(SOURCE_FILES)} task files and {folder}"
    assert list(tmp_path.iterdir()) == []
    assert inst.uninstall(tmp_path) == (
        f"ICU-Bench tasks not installed: {folder} does not exist; nothing to remove"
    )
    assert not inst.status(tmp_path).exists


def test_out_of_date_install_is_rewritten(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(task_yamls_dir(), source)
    target = tmp_path / "tasks"
    target.mkdir()
    inst.install(target, source)
    (source / "icu_new.yaml").write_text("task: icu_new\n")
    (source / "icu_utility_mc.yaml").unlink()
    state = inst.status(target, source)
    assert not state.installed
    assert state.missing == ["icu_new.yaml"] and state.extra == ["icu_utility_mc.yaml"]
    assert state.describe().startswith(f"out of date: {target / inst.INSTALL_DIRNAME} (missing or wrong: ")
    assert inst.install(target, source).startswith(f"updated {len(SOURCE_FILES)} task files into ")
    folder = target / inst.INSTALL_DIRNAME
    assert (folder / "icu_new.yaml").is_symlink() and not (folder / "icu_utility_mc.yaml").exists()
    assert inst.status(target, source).installed
    assert sorted(p.name for p in target.iterdir()) == [inst.INSTALL_DIRNAME]


def test_a_folder_install_did_not_write_is_never_touched(tmp_path):
    folder = tmp_path / inst.INSTALL_DIRNAME
    folder.mkdir()
    (folder / "mine.yaml").write_text("task: mine\n")
    with pytest.raises(ConfigError, match="was not written by `icu-bench tasks install`"):
        inst.install(tmp_path)
    with pytest.raises(ConfigError, match="refusing to remove it"):
        inst.uninstall(tmp_path)
    assert inst.status(tmp_path).describe().startswith("not installed: ")
    assert [p.name for p in folder.iterdir()] == ["mine.yaml"]

    other = tmp_path / "other"
    other.mkdir()
    inst.install(other)
    (other / inst.INSTALL_DIRNAME / "user_task.yaml").write_text("task: user_task\n")  # someone else's file
    message = inst.uninstall(other)
    assert message.endswith("kept the folder, it holds other files: user_task.yaml")
    assert [p.name for p in (other / inst.INSTALL_DIRNAME).iterdir()] == ["user_task.yaml"]


def test_lmms_eval_resolves_includes_hooks_and_stub_from_the_installed_folder(tmp_path):
    from lmms_eval.tasks import TaskManager

    inst.install(tmp_path)
    folder = tmp_path / inst.INSTALL_DIRNAME
    manager = TaskManager("WARNING", include_path=str(tmp_path), include_defaults=False)
    assert {"icu", "icu_mc", "icu_forget_vqa", "icu_utility_mc"} <= set(manager.all_tasks)
    assert manager.task_index["icu_forget_vqa"]["yaml_path"] == str(folder / "icu_forget_vqa.yaml")
    config = manager._get_config("icu_forget_vqa")  # follows include: chains and !function tags
    assert config["output_type"] == "generate_until"  # from _icu_generate_yaml
    assert config["process_docs"].__module__ == "icu_tasks.harness.hooks"
    assert config["dataset_kwargs"]["data_files"]["test"] == str(folder / "_stub.jsonl")


@pytest.mark.subprocess
def test_cli_install_status_uninstall(tmp_path):
    cwd = tmp_path / "cwd"
    folder = tmp_path / inst.INSTALL_DIRNAME
    steps = [
        ("status", 1, f"not installed: {folder} does not exist; run `icu-bench tasks install`"),
        ("install", 0, f"installed {len(SOURCE_FILES)} task files into {folder}"),
        ("install", 0, "ICU-Bench tasks already installed"),
        ("status", 0, f"installed: {len(SOURCE_FILES)} task files in {folder}"),
        ("uninstall", 0, f"removed {len(SOURCE_FILES)} task files and {folder}"),
        ("uninstall", 0, "ICU-Bench tasks not installed"),
    ]
    for command, code, start in steps:
        proc = run_cli(["tasks", command, "--target", str(tmp_path)], cwd)
        assert (proc.returncode, proc.stderr) == (code, ""), (command, proc.stdout, proc.stderr)
        assert proc.stdout.startswith(start) and proc.stdout.count("\n") == 1, (command, proc.stdout)
    assert_one_error(
        run_cli(["tasks", "install", "--target", str(tmp_path / "nope")], cwd), "is not a directory"
    )
    assert run_cli(["tasks-path"], cwd).stdout.strip() == str(task_yamls_dir())


def test_missing_task_message_only_for_icu_hf_runs_that_cannot_find_the_task(tmp_path):
    run = ["--model", "icu_hf", "--tasks", "icu_forget_vqa", "--model_args", "pretrained=x"]
    message = inst.missing_task_message(run, {}, tmp_path)
    assert message == (
        f"the ICU-Bench task icu_forget_vqa is not installed in lmms-eval ({tmp_path}); run "
        '`icu-bench tasks install` once, or pass --include_path "$(icu-bench tasks-path)" to lmms-eval'
    )
    assert inst.missing_task_message(["--model=icu_hf", "--tasks=mme,icu"], {}, tmp_path)
    for argv, env in (
        ([*run, "--include_path", "x"], {}),
        ([*run, "--include=x"], {}),  # argparse abbreviation
        ([*run, "--config", "c.yaml"], {}),
        (run, {"LMMS_EVAL_PLUGINS": "p"}),
        (["--model", "llava_hf", "--tasks", "icu_forget_vqa"], {}),
        (["--model", "icu_hf", "--tasks", "mme"], {}),
    ):
        assert inst.missing_task_message(argv, env, tmp_path) is None, argv
    inst.install(tmp_path)
    assert inst.missing_task_message(run, {}, tmp_path) is None


@pytest.fixture
def real_install_state() -> Iterator[inst.InstallState]:
    """The real lmms-eval folder's state; whatever a test does to it is undone afterwards."""
    state = inst.status()
    if state.exists and not state.installed:
        pytest.skip(f"{state.folder} is in a state this test would not restore: {state.describe()}")
    try:
        yield state
    finally:
        if state.installed:
            inst.install()
        elif inst.status().exists:
            inst.uninstall()


def _literal_command(model_dir: Path, out: Path) -> list[str]:
    return [
        *LMMS_EVAL, "--tasks", "icu_forget_vqa", "--model", "icu_hf",
        "--model_args", f"pretrained={model_dir},batch_size=8", "--limit", "2", "--output_path", str(out),
    ]  # fmt: skip


@pytest.mark.slow
def test_literal_command_without_install_is_one_clear_line(
    tmp_path, small_data_dir, tiny_model_dir, real_install_state
):
    if real_install_state.installed:
        inst.uninstall()
    proc = subprocess.run(
        _literal_command(tiny_model_dir, tmp_path / "eval"),
        cwd=tmp_path,
        env=_lmms_env(tmp_path, small_data_dir),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    tasks_dir = inst.lmms_eval_tasks_dir()
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: the ICU-Bench task icu_forget_vqa is not installed in lmms-eval ({tasks_dir}); "
        'run `icu-bench tasks install` once, or pass --include_path "$(icu-bench tasks-path)" to lmms-eval'
    )
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "eval").exists()


@pytest.mark.slow
def test_literal_command_after_install_scores_the_task(
    tmp_path, small_data_dir, tiny_model_dir, real_install_state
):
    inst.install()
    out = tmp_path / "eval"
    proc = subprocess.run(
        _literal_command(tiny_model_dir, out),
        cwd=tmp_path,  # outside the checkout: nothing relative to the repo can help
        env=_lmms_env(tmp_path, small_data_dir),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Error during evaluation" not in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]
    (results_file,) = out.glob("*/*_results.json")
    results = json.loads(results_file.read_text())
    assert results["n-samples"]["icu_forget_vqa"]["effective"] == 2
    assert 0.0 <= results["results"]["icu_forget_vqa"]["exact_match,none"] <= 1.0
    assert results["configs"]["icu_forget_vqa"]["dataset_kwargs"]["data_files"]["test"] == str(
        inst.lmms_eval_tasks_dir() / inst.INSTALL_DIRNAME / "_stub.jsonl"
    )
