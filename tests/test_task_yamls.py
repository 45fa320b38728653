"""The task YAMLs as lmms-eval sees them: indexing, versions, docs per split, data-dir handling."""

from __future__ import annotations

import shutil
from collections import Counter

import pyarrow.parquet as pq
import pytest
import yaml

from icu_tasks.data.schema import QA_FILE
from icu_tasks.harness import hooks
from icu_tasks.paths import task_names, task_yamls_dir

GENERATE_TASKS = (
    "icu_forget_vqa",
    "icu_forget_qa",
    "icu_retain_vqa",
    "icu_retain_qa",
    "icu_holdout_vqa",
    "icu_holdout_qa",
    "icu_utility",
)
MC_TASKS = tuple(f"{t}_mc" for t in GENERATE_TASKS)
#: The paraphrase view (held-out phrasing, qa_paraphrase.parquet): group icu_para / icu_para_mc.
PARA_TASKS = ("icu_forget_vqa_para", "icu_forget_qa_para", "icu_retain_vqa_para", "icu_retain_qa_para")
PARA_MC_TASKS = tuple(f"{t}_mc" for t in PARA_TASKS)
#: Likelihood (group icu_ll): per split, plus membership inference per view (tests/test_likelihood.py).
LL_TASKS = (
    *(f"icu_ll_{s}_{v}" for s in ("forget", "retain", "holdout") for v in ("vqa", "qa")),
    "icu_ll_utility",
    "icu_mia_vqa",
    "icu_mia_qa",
)
LONGFORM_TASKS = ("icu_longform_forget", "icu_longform_retain")
ALL_TASKS = GENERATE_TASKS + MC_TASKS + PARA_TASKS + PARA_MC_TASKS + LL_TASKS + LONGFORM_TASKS
GROUPS = {
    "icu": GENERATE_TASKS,
    "icu_mc": MC_TASKS,
    "icu_para": PARA_TASKS,
    "icu_para_mc": PARA_MC_TASKS,
    "icu_ll": LL_TASKS,
    "icu_longform": LONGFORM_TASKS,
}
#: (split, view) each task scores; view None = both views.
SELECTION = {
    "icu_forget_vqa": ("forget", "vqa"),
    "icu_forget_qa": ("forget", "qa"),
    "icu_retain_vqa": ("retain_eval", "vqa"),
    "icu_retain_qa": ("retain_eval", "qa"),
    "icu_holdout_vqa": ("holdout", "vqa"),
    "icu_holdout_qa": ("holdout", "qa"),
    "icu_utility": ("utility", None),
}


@pytest.fixture(scope="module")
def task_manager():
    from lmms_eval.tasks import TaskManager

    return TaskManager("WARNING", include_path=str(task_yamls_dir()), include_defaults=False)


class _KeepTags(yaml.SafeLoader):
    """Reads a task YAML as written (``!function`` kept as a plain string, ``include`` not followed)."""


_KeepTags.add_constructor("!function", lambda loader, node: f"!function {loader.construct_scalar(node)}")


def test_task_manager_indexes_all_tasks_and_groups(task_manager):
    """What ``lmms-eval --include_path ... --tasks list`` prints (the index's ``all_tasks``): every task and
    group, nothing else."""
    assert set(task_manager.all_subtasks) == set(ALL_TASKS)
    assert set(task_manager.all_groups) == set(GROUPS)
    assert sorted(task_manager.all_tasks) == sorted({*ALL_TASKS, *GROUPS})
    for group, tasks in GROUPS.items():
        config = yaml.load((task_yamls_dir() / f"{group}.yaml").read_text(), Loader=_KeepTags)
        assert config["task"] == list(tasks)


def test_task_names_without_lmms_eval_are_lmms_evals_index(task_manager, tmp_path):
    """``task_names`` (what ``icu-bench run`` checks ``--tasks`` against without importing lmms-eval) is the
    index lmms-eval builds: on the shipped YAMLs, and on a folder with a tag, a group config, a python-class
    task, a ``!function`` and an ``include`` template that holds a task name of its own."""
    from lmms_eval.tasks import TaskManager

    assert task_names() == sorted(task_manager.all_tasks)
    (tmp_path / "_template_yaml").write_text("task: t_template\noutput_type: generate_until\n")
    (tmp_path / "d.yaml").write_text("include: _template_yaml\n")  # its name comes from the template
    (tmp_path / "a.yaml").write_text(
        "include: _template_yaml\ntask: t_a\ntag: [tag_x, tag_y]\nprocess_results: !function m.f\n"
    )
    (tmp_path / "b.yaml").write_text("task: t_b\ngroup: tag_x\n")
    (tmp_path / "g.yaml").write_text("group: g\ntask: [t_a, t_b]\n")
    (tmp_path / "p.yaml").write_text("task: t_py\nclass: !function m.C\ntag: not_registered\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text("task: t_c\n")
    (tmp_path / "other.yaml").write_text("metric_list: []\n")
    (tmp_path / ".ipynb_checkpoints").mkdir()  # a folder lmms-eval's index skips
    (tmp_path / ".ipynb_checkpoints" / "a-checkpoint.yaml").write_text("task: t_checkpoint\n")
    expected = TaskManager("WARNING", include_path=str(tmp_path), include_defaults=False).all_tasks
    assert (
        task_names(tmp_path)
        == sorted(expected)
        == sorted(["t_a", "t_b", "t_c", "t_py", "t_template", "tag_x", "tag_y", "g"])
    )


def test_every_yaml_has_a_version():
    files = sorted(task_yamls_dir().glob("*.yaml"))
    assert len(files) == len(ALL_TASKS) + len(GROUPS)
    for path in files:
        config = yaml.load(path.read_text(), Loader=_KeepTags)
        assert isinstance(config.get("metadata", {}).get("version"), (int, float)), path.name


def test_task_configs(task_manager):
    """Resolved configs (templates included): output types, greedy decoding, our hooks and metrics."""
    for name in GENERATE_TASKS + MC_TASKS + PARA_TASKS + PARA_MC_TASKS:  # icu_ll: tests/test_likelihood.py
        config = task_manager._get_config(name)
        mc = name.endswith("_mc")
        assert config["output_type"] == ("multiple_choice" if mc else "generate_until")
        assert config["process_docs"].__module__ == "icu_tasks.harness.hooks"
        assert config["process_docs"].__name__ == name.removeprefix("icu_").removesuffix("_mc") + "_docs"
        assert [m["metric"] for m in config["metric_list"]] == list(
            hooks.MC_METRICS if mc else hooks.GENERATE_METRICS
        )
        assert config["dataset_kwargs"]["data_files"]["test"].endswith("_stub.jsonl")
        if not mc:
            gen = config["generation_kwargs"]
            assert gen["do_sample"] is False and gen["max_new_tokens"] <= 64
    for (
        name
    ) in ALL_TASKS:  # lmms-eval's clustered standard error: one cluster per profile (icu_tasks.harness.hooks)
        assert task_manager._get_config(name)["cluster_key"] == "profile_id", name


def _expected_counts(data_dir) -> Counter:
    """Rows per (split, view), read straight from qa.parquet (independently of the loader)."""
    table = pq.read_table(data_dir / QA_FILE, columns=["split", "view"]).to_pylist()
    return Counter((r["split"], r["view"]) for r in table)


def _count(counts: Counter, split: str, view: str | None) -> int:
    return sum(n for (s, v), n in counts.items() if s == split and (view is None or v == view))


def test_docs_per_split(small_data_dir, task_manager, monkeypatch):
    monkeypatch.setenv("ICU_DATA_DIR", str(small_data_dir))
    counts = _expected_counts(small_data_dir)
    loaded = task_manager.load_task_or_group(["icu", "icu_mc"])
    tasks = {name: task for group in loaded.values() for name, task in group.items()}
    assert set(tasks) == set(GENERATE_TASKS + MC_TASKS)
    for name, task in tasks.items():
        split, view = SELECTION[name.removesuffix("_mc")]
        docs = task.test_docs()
        assert len(docs) == _count(counts, split, view) > 0, name
        assert set(docs["split"]) == {split}
        if view is not None:
            assert set(docs["view"]) == {view}
    forget_ids = set(tasks["icu_forget_vqa"].test_docs()["forget_task"])
    manifest_ids = set(hooks.open_task_data().task_ids)
    assert forget_ids == manifest_ids and 0 not in forget_ids
    assert set(tasks["icu_retain_qa"].test_docs()["forget_task"]) == {0}
    # The multiple-choice target indexes the answer among four choices.
    doc = tasks["icu_forget_qa_mc"].test_docs()[0]
    assert (
        tasks["icu_forget_qa_mc"].doc_to_choice(doc)[tasks["icu_forget_qa_mc"].doc_to_target(doc)]
        == doc["answer"]
    )


def test_holdout_and_paraphrase_docs(small_data_dir, task_manager, monkeypatch):
    """The holdout tasks return exactly the never-trained profiles; the _para tasks the paraphrase rows of
    the right split and view (read straight from the parquet files), each pointing at its core row."""
    from icu_tasks.data.schema import PARAPHRASE_FILE

    monkeypatch.setenv("ICU_DATA_DIR", str(small_data_dir))
    core = pq.read_table(small_data_dir / QA_FILE).to_pylist()
    para = pq.read_table(small_data_dir / PARAPHRASE_FILE).to_pylist()
    loaded = task_manager.load_task_or_group(["icu_holdout_vqa", "icu_holdout_qa_mc", "icu_para"])
    tasks = {}
    for name, value in loaded.items():
        tasks.update(value if isinstance(value, dict) else {name: value})
    for name in ("icu_holdout_vqa", "icu_holdout_qa_mc"):
        view = "vqa" if "vqa" in name else "qa"
        docs = tasks[name].test_docs()
        assert docs["id"] == [r["id"] for r in core if r["split"] == "holdout" and r["view"] == view]
        assert len(docs) == 4 * 8  # 4 holdout profiles x 8 questions
    retain_eval = {r["profile_id"] for r in core if r["split"] == "retain_eval"}
    for name in PARA_TASKS:
        split = "forget" if "forget" in name else "retain_eval"
        view = "vqa" if "_vqa_" in name else "qa"
        docs = tasks[name].test_docs()
        expected = [r for r in para if r["split"] == split and r["view"] == view]
        assert docs["id"] == [r["id"] for r in expected] and len(docs) > 0, name
        assert set(docs["phrasing"]) == {"paraphrase"}
        assert docs["question"] != [r["question"] for r in core if r["id"] in set(docs["core_id"])]
        if split == "retain_eval":
            assert set(docs["profile_id"]) == retain_eval
    # A paraphrase sample's payload says so (the continual reader keeps it out of the matrices).
    doc = tasks["icu_forget_qa_para"].test_docs()[0]
    payload = hooks.process_results(doc, [doc["answer"]])["exact_match"]
    assert payload["phrasing"] == "paraphrase" and payload["exact_match"] == 1.0
    assert "phrasing" not in hooks.process_results(core[0], [""])["exact_match"]


def test_format_1_data_dir_has_no_holdout_and_says_so(small_data_dir, tmp_path, monkeypatch):
    """A data dir from before the holdout split (format 1: holdout profiles were retain_eval, no paraphrase
    file) still loads, and the holdout / _para tasks stop with one line naming the reason."""
    import json

    import pyarrow as pa

    from icu_tasks.data.schema import LONGFORM_FILE, MANIFEST_FILE, PARAPHRASE_FILE, QA_SCHEMA

    old = tmp_path / "old"
    shutil.copytree(small_data_dir, old)
    rows = pq.read_table(old / QA_FILE).to_pylist()
    rows = [{**r, "split": "retain_eval"} if r["split"] == "holdout" else r for r in rows]
    pq.write_table(pa.Table.from_pylist(rows, schema=QA_SCHEMA), old / QA_FILE)
    (old / PARAPHRASE_FILE).unlink()
    (old / LONGFORM_FILE).unlink()
    manifest = json.loads((old / MANIFEST_FILE).read_text())
    manifest["format_version"] = 1
    by_split = manifest["counts"]["rows_by_split"]
    by_split["retain_eval"] += by_split.pop("holdout")
    for key in ("paraphrase_rows", "paraphrase_rows_by_split", "longform_rows", "longform_rows_by_split"):
        del manifest["counts"][key]
    (old / MANIFEST_FILE).write_text(json.dumps(manifest))
    monkeypatch.setenv("ICU_DATA_DIR", str(old))
    assert len(hooks.retain_qa_docs()) == 8 * 8  # the old layout still scores
    for hook, rows_word in ((hooks.holdout_vqa_docs, "rows"), (hooks.retain_qa_para_docs, "paraphrase rows")):
        with pytest.raises(hooks.DataUnavailable) as info:
            hook()
        message = str(info.value)
        assert "\n" not in message and f"has no {rows_word} for split" in message
        assert "generated before the holdout split and the paraphrase file existed" in message


@pytest.mark.parametrize("problem", ["missing", "not_a_dir", "no_qa"])
def test_unusable_data_dir_fails_with_one_line(problem, tmp_path, small_data_dir, monkeypatch):
    target = tmp_path / "icu"
    if problem == "not_a_dir":
        target.write_text("not a data dir")
    elif problem == "no_qa":
        shutil.copytree(small_data_dir, target)
        (target / QA_FILE).unlink()
    monkeypatch.setenv("ICU_DATA_DIR", str(target))
    with pytest.raises(hooks.DataUnavailable) as info:
        hooks.forget_vqa_docs()
    message = str(info.value)
    assert "\n" not in message and str(target) in message
    assert "icu-bench data generate --out DIR" in message and "export ICU_DATA_DIR=DIR" in message
    assert info.value.code == f"error: {message}"  # what the lmms-eval CLI prints before exiting 1


def test_docs_follow_icu_data_dir_changes(small_data_dir, tmp_path, monkeypatch, task_manager):
    """process_docs reads the data dir named at load time: no stale docs after ICU_DATA_DIR changes,
    and none after a data dir is regenerated in place."""
    from icu_tasks.data.generate import generate

    def forget_docs():
        return task_manager.load_task_or_group("icu_forget_qa")["icu_forget_qa"].test_docs()

    monkeypatch.setenv("ICU_DATA_DIR", str(small_data_dir))
    first = forget_docs()
    other = tmp_path / "other"
    generate(
        other, seed=1, profiles=16, tasks=2, profiles_per_task=2, image_size=96, workers=1, progress=False
    )
    monkeypatch.setenv("ICU_DATA_DIR", str(other))
    second = forget_docs()
    assert len(second) == _count(_expected_counts(other), "forget", "qa") != len(first)
    assert set(second["forget_task"]) == {1, 2}

    # Regenerated in place with another seed: same path, new content.
    shutil.rmtree(other)
    generate(
        other, seed=2, profiles=16, tasks=2, profiles_per_task=2, image_size=96, workers=1, progress=False
    )
    third = forget_docs()
    expected = pq.read_table(other / QA_FILE).to_pylist()
    assert third["answer"] == [r["answer"] for r in expected if r["split"] == "forget" and r["view"] == "qa"]
    assert third["answer"] != second["answer"]


def test_tasks_path_command_prints_the_include_path(capsys):
    from icu_unlearn.cli import main

    assert main(["tasks-path"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == str(task_yamls_dir()) and (task_yamls_dir() / "icu.yaml").is_file()


def test_longform_task_configs_and_docs(small_data_dir, task_manager, monkeypatch):
    """The icu_longform tasks: greedy generation with room for a summary, the long-form hooks and metrics,
    and exactly the long-form rows of their split (read straight from the parquet file)."""
    from icu_tasks.data.schema import LONGFORM_FILE
    from icu_tasks.harness import longform as longform_hooks
    from icu_tasks.harness.prompts import LONGFORM_INSTRUCTION

    for name in LONGFORM_TASKS:
        config = task_manager._get_config(name)
        assert config["output_type"] == "generate_until"
        assert config["process_docs"].__module__ == "icu_tasks.harness.longform"
        assert config["process_results"] is longform_hooks.process_results
        assert [m["metric"] for m in config["metric_list"]] == list(longform_hooks.LONGFORM_METRICS)
        gen = config["generation_kwargs"]
        assert gen["do_sample"] is False and gen["max_new_tokens"] == 128
    monkeypatch.setenv("ICU_DATA_DIR", str(small_data_dir))
    rows = pq.read_table(small_data_dir / LONGFORM_FILE).to_pylist()
    loaded = task_manager.load_task_or_group(["icu_longform"])
    tasks = {n: t for group in loaded.values() for n, t in group.items()}
    assert set(tasks) == set(LONGFORM_TASKS)
    for name, split, n in (("icu_longform_forget", "forget", 6), ("icu_longform_retain", "retain_eval", 4)):
        docs = tasks[name].test_docs()
        assert docs["id"] == [r["id"] for r in rows if r["split"] == split] and len(docs) == n, name
        doc = docs[0]
        assert tasks[name].doc_to_text(doc).endswith("\n" + LONGFORM_INSTRUCTION)
        assert tasks[name].doc_to_visual(doc) == []
        payload = longform_hooks.process_results(doc, [doc["answer"]])["longform_leakage"]
        assert payload["longform_leakage"] == 1.0 and payload["phrasing"] == "longform"
        assert payload["score"] == 1.0 and payload["profile_id"] == doc["profile_id"]
        assert payload["value_recall"] == [1.0] * 8
