"""End to end through lmms-eval's own command line: icu_hf + the tiny model on the small data set.

One real ``lmms-eval`` run of the fine-tuned (vanilla) fixture in a subprocess writes lmms-eval's results JSON
and samples JSONL files; the tests then check their contents against the data (``qa.parquet`` read directly),
recompute every per-sample score from the logged answer with the hand-written checks below (not the metric
functions under test), and check that lmms-eval's aggregate is their mean.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import unicodedata
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from icu_tasks.data.schema import QA_FILE
from icu_tasks.harness.prompts import question_text
from icu_tasks.paths import task_yamls_dir
from tests.fixtures_unlearn import FIXTURE_FACTS
from tests.lmms_checks import check_stderrs
from tests.subprocess_env import OVERLAPPED, started_together, subprocess_env
from tests.test_task_yamls import GENERATE_TASKS  # the icu group's free-answer tasks

pytestmark = pytest.mark.slow

MC_TASK = "icu_forget_qa_mc"  # one multiple-choice task keeps the loglikelihood path covered at low cost
SELECTION = {
    "icu_forget_vqa": ("forget", "vqa"),
    "icu_forget_qa": ("forget", "qa"),
    "icu_retain_vqa": ("retain_eval", "vqa"),
    "icu_retain_qa": ("retain_eval", "qa"),
    "icu_holdout_vqa": ("holdout", "vqa"),
    "icu_holdout_qa": ("holdout", "qa"),
    "icu_utility": ("utility", None),
    MC_TASK: ("forget", "qa"),
}
LMMS_EVAL = [sys.executable, "-m", "lmms_eval"]
#: Exact-match floor of the vanilla fixture on the CLI's generate tasks, per view. The fixture is fine-tuned until
#: it answers (it checks its own stage-0 scores on forget task 1 and retain-eval); this run pools every forget
#: task, so the floor is looser and only says that the whole CLI path (YAML -> hooks -> icu_hf -> metric) scores
#: a trained model as trained: the untrained tiny model scores 0.0 on every task.
MIN_CLI_EXACT_MATCH = {"qa": 0.75, "vqa": 0.35}


def _env(tmp_path: Path, data_dir: Path | str) -> dict[str, str]:
    """Hermetic: lmms-eval caches its stub dataset (HF_HOME, HF_DATASETS_CACHE) under ``tmp_path``; the run
    overlaps with the module's side runs (``OVERLAPPED``)."""
    return subprocess_env(tmp_path, ICU_DATA_DIR=str(data_dir), **OVERLAPPED)


def _run(cmd: list[str], tmp_path: Path, data_dir: Path | str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, env=_env(tmp_path, data_dir), cwd=tmp_path, capture_output=True, text=True, timeout=timeout
    )


# Per-sample scores recomputed by hand from the logged answer and the row's answer.


def _norm(text: str) -> str:
    """NFKC, casefold, keep letters, digits and spaces only (``$52,000`` -> ``52000``), collapse spaces."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.sub(r"[^\w\s]|_", "", text).split())


def _hand_exact(prediction: str, answer: str) -> float:
    return float(_norm(prediction) == _norm(answer))


def _hand_contains(prediction: str, answer: str) -> float:
    """The answer's tokens appear in the prediction as a run of whole tokens."""
    p, a = _norm(prediction).split(), _norm(answer).split()
    return float(any(p[i : i + len(a)] == a for i in range(len(p) - len(a) + 1)))


def _hand_lcs_recall(prediction: str, answer: str) -> float:
    """Longest common token subsequence / answer tokens, without stemming (ROUGE-L recall is >= this)."""
    p, a = _norm(prediction).split(), _norm(answer).split()
    lcs = [[0] * (len(a) + 1) for _ in range(len(p) + 1)]
    for i, x in enumerate(p):
        for j, y in enumerate(a):
            lcs[i + 1][j + 1] = lcs[i][j] + 1 if x == y else max(lcs[i][j + 1], lcs[i + 1][j])
    return lcs[len(p)][len(a)] / len(a)


def _hand_mc(record: dict, choices: list[str]) -> tuple[str, float]:
    """(predicted choice, accuracy) from the logged ``"(loglikelihood, is_greedy)"`` per choice."""
    lls = [ast.literal_eval(r)[0] for r in record["filtered_resps"]]
    best = max(range(len(lls)), key=lambda i: (lls[i], -i))  # highest, first on ties
    return choices[best], float(best == int(record["target"]))


def _side_commands(
    small_data_dir: Path, tiny_model_dir: Path, missing: Path
) -> dict[str, tuple[list[str], Path | str]]:
    """The module's runs that need no trained model: ``name -> (command, $ICU_DATA_DIR)``."""
    example = task_yamls_dir().parent / "examples" / "reuse_in_pipeline.py"
    return {
        "missing_data": (
            [*LMMS_EVAL, "--include_path", str(task_yamls_dir()), "--tasks", "icu_forget_vqa",
             "--model", "icu_hf", "--model_args", f"pretrained={tiny_model_dir}", "--verbosity", "WARNING"],
            missing,
        ),
        "reuse_example": (
            [sys.executable, str(example), "--data", str(small_data_dir), "--tasks", "icu_forget_vqa,icu_forget_qa",
             "--model-args", f"pretrained={tiny_model_dir},max_new_tokens=4", "--limit", "3"],
            "unused: --data sets it",
        ),
    }  # fmt: skip


@pytest.fixture(scope="module")
def side_runs(tmp_path_factory, small_data_dir, tiny_model_dir):
    """The runs of :func:`_side_commands`, started together before :func:`cli_run` (they overlap with it and
    with each other); each test awaits its own with ``.result()``. ``missing_data`` points
    ``$ICU_DATA_DIR`` at a dir that does not exist (returned as ``runs["missing"]``)."""
    tmp = tmp_path_factory.mktemp("lmms_cli_side")
    missing = tmp / "no_such_data"
    with started_together(tmp, _side_commands(small_data_dir, tiny_model_dir, missing)) as runs:
        yield {**runs, "missing": missing}


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, small_data_dir, vanilla_model_dir, side_runs):
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
    proc = _run(cmd, tmp, small_data_dir, timeout=900)
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
    stdout, results, samples = cli_run
    for task in (*GENERATE_TASKS, MC_TASK):
        assert re.search(rf"^\|(?: - )?{task}\s*\|", stdout, re.MULTILINE), task  # lmms-eval's printed table
    assert re.search(r"^\|.*\|Stderr\s*\|Stderr_CLT\s*\|Stderr_Clustered\s*\|", stdout, re.MULTILINE)
    assert results["group_subtasks"]["icu"] == list(GENERATE_TASKS)
    rows = _rows(small_data_dir)
    counts = Counter((r["split"], r["view"]) for r in rows.values())
    for task, (split, view) in SELECTION.items():
        expected = sum(n for (s, v), n in counts.items() if s == split and view in (None, v))
        assert results["n-samples"][task]["effective"] == expected > 0, task
        assert results["versions"][task] == 1.2
        assert results["higher_is_better"][task]["exact_match" if task != MC_TASK else "mc_accuracy"] is {
            "forget": False, "retain_eval": True, "utility": True, "holdout": None
        }[split], task  # fmt: skip
        # lmms-eval's aggregate = the mean of the per-sample scores recomputed by hand from the logged answers
        records = samples[task]
        if task == MC_TASK:
            hand = {"mc_accuracy": [_hand_mc(r, rows[r["mc_accuracy"]["id"]]["choices"])[1] for r in records]}
        else:
            answers = [(r["filtered_resps"], rows[r["exact_match"]["id"]]["answer"]) for r in records]
            hand = {
                "exact_match": [_hand_exact(p, a) for p, a in answers],
                "contains": [_hand_contains(p, a) for p, a in answers],
            }
        profiles = [
            rows[r["mc_accuracy" if task == MC_TASK else "exact_match"]["id"]]["profile_id"] for r in records
        ]
        for name, values in hand.items():
            assert results["results"][task][f"{name},none"] == pytest.approx(sum(values) / len(values)), (
                task,
                name,
            )
            # lmms-eval's CLT and per-profile clustered standard errors of these per-doc values
            check_stderrs(results["results"][task], name, values, profiles)
    # The fine-tuned fixture answers: the whole CLI path scores it far above an untrained model (0.0).
    floors = ("icu_forget_vqa", "icu_forget_qa", "icu_retain_vqa", "icu_retain_qa")
    FIXTURE_FACTS["lmms_cli exact match"] = ", ".join(
        f"{t} {results['results'][t]['exact_match,none']:.2f} (floor {MIN_CLI_EXACT_MATCH[SELECTION[t][1]]})"
        for t in floors
    )
    for task in floors:
        floor = MIN_CLI_EXACT_MATCH[SELECTION[task][1]]
        assert results["results"][task]["exact_match,none"] >= floor, (task, results["results"][task])


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
            for name in metric_names:  # one payload under every metric, with that metric's value as "score"
                assert record[name] == {**payload, "score": payload[name]}
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
                assert record["target"] == str(row["choices"].index(row["answer"]))
                assert (payload["prediction"], payload["mc_accuracy"]) == _hand_mc(record, row["choices"])
            else:
                prediction = record["filtered_resps"]
                assert record["target"] == row["answer"]
                assert payload["prediction"] == prediction
                assert payload["exact_match"] == _hand_exact(prediction, row["answer"]), (prediction, row)
                assert payload["contains"] == _hand_contains(prediction, row["answer"]), (prediction, row)
                # ROUGE-L recall (stemmed) is at least the unstemmed LCS recall, at most 1, and 1 when the
                # answer is contained
                rouge = payload["rougeL_recall"]
                assert _hand_lcs_recall(prediction, row["answer"]) - 1e-9 <= rouge <= 1.0, (prediction, row)
                assert rouge == 1.0 or not payload["contains"], (prediction, row)
        assert len(seen_ids) == len(records)  # every doc once
        assert len({r["doc_hash"] for r in records}) == len(records)  # each doc its own hash
        for name in metric_names:  # lmms-eval's aggregate is the mean of the per-sample payloads
            mean = sum(r[name][name] for r in records) / len(records)
            assert results["results"][task][f"{name},none"] == pytest.approx(mean)
        if split == "forget":
            assert {r[metric_names[0]]["forget_task"] for r in records} == manifest_tasks


def test_hand_checks_themselves():
    """The hand-written scorers above on cases whose answer is known (so they cannot pass vacuously)."""
    assert _hand_exact("  $52,000. ", "52000") == 1.0 and _hand_exact("52 000", "52000") == 0.0
    assert _hand_exact("MED-0042", "med0042") == 1.0 and _hand_exact("Ｍed-0042", "med0042") == 1.0  # NFKC
    assert _hand_contains("room 12 left", "12") == 1.0 and _hand_contains("room 312", "12") == 0.0
    assert _hand_contains("It is Megan Chang.", "megan chang") == 1.0
    assert _hand_contains("Chang Megan", "Megan Chang") == 0.0
    assert _hand_lcs_recall("Chang Megan", "Megan Chang") == 0.5  # LCS "megan" (or "chang"): 1 of 2 tokens
    assert _hand_lcs_recall("born 1974-07-24 in Paris", "1974-07-24") == 1.0
    record = {
        "filtered_resps": ["(-3.0, False)", "(-1.5, True)", "(-1.5, False)", "(-9.0, False)"],
        "target": "1",
    }
    assert _hand_mc(record, ["a", "b", "c", "d"]) == ("b", 1.0)  # tie -1.5: the first of the two wins


def test_cli_answers_equal_direct_generation(cli_run, small_data_dir, vanilla_model_dir):
    """What the CLI scored (YAML → hooks → icu_hf) is what the model answers to question_text(row) and the
    row's image when called directly, i.e. the prompt and image the training code uses."""
    from icu_tasks.data.dataset import open_data
    from icu_unlearn.models.inference import generate_texts
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


def test_missing_data_dir_is_one_clear_line(side_runs):
    proc = side_runs["missing_data"].result(timeout=300)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (
        f"error: ICU-Bench data dir {side_runs['missing']} (from $ICU_DATA_DIR) does not exist; generate it with "
        "`icu-bench data generate --out DIR` and `export ICU_DATA_DIR=DIR`"
    )
    assert "Traceback" not in proc.stderr


def test_reuse_in_pipeline_example(side_runs):
    """examples/reuse_in_pipeline.py: ICU tasks next to another lmms-eval task in one simple_evaluate call."""
    proc = side_runs["reuse_example"].result(timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for task in ("icu_forget_vqa", "icu_forget_qa", "my_pipeline_arith"):
        assert re.search(rf"^\|(?: - )?{task}\s*\|", proc.stdout, re.MULTILINE), task
    assert re.search(r"^icu_forget_qa: exact match per forget task: \d+: \d\.\d\d", proc.stdout, re.MULTILINE)
