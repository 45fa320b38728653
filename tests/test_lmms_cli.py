"""End to end through lmms-eval's own command line: icu_hf + the tiny model on the small data set.

The model is the *untrained* tiny model for now (the fine-tuned fixture lands with the unlearning layer), so
these tests check wiring and consistency of every score, not accuracy.

One real ``lmms-eval`` run in a subprocess writes lmms-eval's results JSON and samples JSONL files; the tests
then check their contents against the data (``qa.parquet`` read directly) and against the metric functions.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from icu_tasks import metrics
from icu_tasks.paths import task_yamls_dir
from icu_tasks.prompts import question_text
from icu_tasks.schema import QA_FILE
from tests.fixtures_unlearn import MIN_STAGE0_QA

pytestmark = pytest.mark.slow

GENERATE_TASKS = ("icu_forget_vqa", "icu_forget_qa", "icu_retain_vqa", "icu_retain_qa", "icu_utility")
MC_TASK = "icu_forget_qa_mc"  # one multiple-choice task keeps the loglikelihood path covered at low cost
SELECTION = {
    "icu_forget_vqa": ("forget", "vqa"),
    "icu_forget_qa": ("forget", "qa"),
    "icu_retain_vqa": ("retain_eval", "vqa"),
    "icu_retain_qa": ("retain_eval", "qa"),
    "icu_utility": ("utility", None),
    MC_TASK: ("forget", "qa"),
}
LMMS_EVAL = [sys.executable, "-m", "lmms_eval"]


def _env(tmp_path: Path, data_dir: Path | str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ICU_DATA_DIR=str(data_dir),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_CACHE=str(tmp_path / "hf_datasets"),  # lmms-eval caches the stub dataset here
        TOKENIZERS_PARALLELISM="false",
        CUDA_VISIBLE_DEVICES="",
    )
    return env


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, small_data_dir, vanilla_model_dir):
    """One ``lmms-eval --tasks icu,icu_forget_qa_mc --log_samples`` run; returns (stdout, results, samples)."""
    tmp = tmp_path_factory.mktemp("lmms_cli")
    out = tmp / "eval"
    cmd = [
        *LMMS_EVAL,
        "--include_path", str(task_yamls_dir()),
        "--tasks", f"icu,{MC_TASK}",
        "--model", "icu_hf",
        "--model_args", f"pretrained={vanilla_model_dir},batch_size=16",
        "--output_path", str(out),
        "--log_samples",
        "--verbosity", "WARNING",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=_env(tmp, small_data_dir), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Error during evaluation" not in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]
    (model_dir,) = out.iterdir()  # lmms-eval writes OUT/<sanitized model name>/...
    (results_file,) = model_dir.glob("*_results.json")
    date = results_file.name.removesuffix("_results.json")
    samples = {}
    for task in (*GENERATE_TASKS, MC_TASK):
        path = model_dir / f"{date}_samples_{task}.jsonl"
        samples[task] = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return proc.stdout, json.loads(results_file.read_text()), samples


def _rows(data_dir: Path) -> dict[str, dict]:
    return {r["id"]: r for r in pq.read_table(data_dir / QA_FILE).to_pylist()}


def test_table_and_results_cover_every_task(cli_run, small_data_dir):
    stdout, results, _ = cli_run
    for task in (*GENERATE_TASKS, MC_TASK):
        assert re.search(rf"^\|(?: - )?{task}\s*\|", stdout, re.MULTILINE), task  # lmms-eval's printed table
    assert results["group_subtasks"]["icu"] == list(GENERATE_TASKS)
    counts = Counter((r["split"], r["view"]) for r in _rows(small_data_dir).values())
    for task, (split, view) in SELECTION.items():
        expected = sum(n for (s, v), n in counts.items() if s == split and view in (None, v))
        assert results["n-samples"][task]["effective"] == expected > 0, task
        assert results["versions"][task] == 1.0
        names = ("mc_accuracy",) if task == MC_TASK else ("exact_match", "contains", "rougeL_recall")
        for name in names:
            assert 0.0 <= results["results"][task][f"{name},none"] <= 1.0, (task, name)
    # The fine-tuned fixture knows the text view: the whole path (YAML -> hooks -> icu_hf -> metric) scores it
    # high, the same bar tests/test_finetune.py sets with the direct scorer.
    for task in ("icu_forget_qa", "icu_retain_qa"):
        assert results["results"][task]["exact_match,none"] >= MIN_STAGE0_QA, results["results"][task]


def test_samples_carry_the_data_and_consistent_scores(cli_run, small_data_dir):
    _, results, samples = cli_run
    rows = _rows(small_data_dir)
    manifest_tasks = {
        int(k) for k in json.loads((small_data_dir / "manifest.json").read_text())["forget_tasks"]
    }
    for task, records in samples.items():
        split, view = SELECTION[task]
        assert len(records) == results["n-samples"][task]["effective"]
        metric_names = ("mc_accuracy",) if task == MC_TASK else ("exact_match", "contains", "rougeL_recall")
        seen_ids = set()
        for record in records:
            payload = record[metric_names[0]]
            assert all(record[name] == payload for name in metric_names)  # one payload under every metric
            row = rows[payload["id"]]
            seen_ids.add(payload["id"])
            assert (payload["split"], payload["view"], payload["field"]) == (
                row["split"],
                row["view"],
                row["field"],
            )
            assert payload["forget_task"] == row["forget_task"]
            assert payload["split"] == split and (view is None or payload["view"] == view)
            assert record["input"] == question_text(row)  # the user text icu_hf received
            if task == MC_TASK:
                assert payload["prediction"] in row["choices"]
                assert payload["mc_accuracy"] == float(payload["prediction"] == row["answer"])
            else:
                assert record["target"] == row["answer"]
                assert payload["prediction"] == record["filtered_resps"]
                assert payload["exact_match"] == metrics.exact_match(payload["prediction"], row["answer"])
                assert payload["contains"] == metrics.contains_match(payload["prediction"], row["answer"])
        assert len(seen_ids) == len(records)  # every doc once
        for name in metric_names:  # lmms-eval's aggregate is the mean of the per-sample payloads
            mean = sum(r[name][name] for r in records) / len(records)
            assert results["results"][task][f"{name},none"] == pytest.approx(mean)
        if split == "forget":
            assert {r[metric_names[0]]["forget_task"] for r in records} == manifest_tasks


def test_cli_answers_equal_direct_generation(cli_run, small_data_dir, vanilla_model_dir):
    """What the CLI scored (YAML → hooks → icu_hf) is what the model answers to question_text(row) and the
    row's image when called directly, i.e. the prompt and image the training code uses."""
    from icu_tasks.dataset import open_data
    from icu_unlearn.inference import generate_texts
    from icu_unlearn.models.loading import load_base

    _, _, samples = cli_run
    data = open_data(small_data_dir)
    rows = _rows(small_data_dir)
    picked = [rec["exact_match"] for task in ("icu_forget_vqa", "icu_forget_qa") for rec in samples[task][:6]]
    model, processor = load_base(vanilla_model_dir, "cpu", "float32")
    questions = [question_text(rows[p["id"]]) for p in picked]
    images = [[data.load_image(rows[p["id"]]["image"])] if rows[p["id"]]["image"] else [] for p in picked]
    direct = generate_texts(model, processor, questions, images, 32, 1, until=["\n"])
    assert direct == [p["prediction"] for p in picked]


def test_tasks_list_shows_the_icu_tasks(tmp_path, small_data_dir):
    proc = subprocess.run(
        [*LMMS_EVAL, "--include_path", str(task_yamls_dir()), "--tasks", "list"],
        env=_env(tmp_path, small_data_dir),
        capture_output=True,
        text=True,
        timeout=300,
    )
    listed = proc.stdout + proc.stderr
    for task in (*GENERATE_TASKS, *(f"{t}_mc" for t in GENERATE_TASKS), "icu", "icu_mc"):
        assert f" - {task}\n" in listed, task


def test_missing_data_dir_is_one_clear_line(tmp_path, tiny_model_dir):
    missing = tmp_path / "no_such_data"
    proc = subprocess.run(
        [*LMMS_EVAL, "--include_path", str(task_yamls_dir()), "--tasks", "icu_forget_vqa",
         "--model", "icu_hf", "--model_args", f"pretrained={tiny_model_dir}", "--verbosity", "WARNING"],
        env=_env(tmp_path, missing),
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (
        f"error: ICU-Bench data dir {missing} (from $ICU_DATA_DIR) does not exist; generate it with "
        "`icu-bench data generate --out DIR` and `export ICU_DATA_DIR=DIR`"
    )
    assert "Traceback" not in proc.stderr


def test_reuse_in_pipeline_example(tmp_path, small_data_dir, tiny_model_dir):
    """examples/reuse_in_pipeline.py: ICU tasks next to another lmms-eval task in one simple_evaluate call."""
    example = task_yamls_dir().parent / "examples" / "reuse_in_pipeline.py"
    proc = subprocess.run(
        [sys.executable, str(example), "--data", str(small_data_dir), "--tasks", "icu_forget_vqa,icu_forget_qa",
         "--model-args", f"pretrained={tiny_model_dir},max_new_tokens=4", "--limit", "3"],
        env=_env(tmp_path, "unused: --data sets it"),
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    for task in ("icu_forget_vqa", "icu_forget_qa", "my_pipeline_arith"):
        assert re.search(rf"^\|(?: - )?{task}\s*\|", proc.stdout, re.MULTILINE), task
    assert re.search(r"^icu_forget_qa: exact match per forget task: \d+: \d\.\d\d", proc.stdout, re.MULTILINE)
