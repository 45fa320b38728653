"""The continual report from lmms-eval result files written by lmms-eval's own code.

The fixture builds each logged sample with lmms-eval 0.7.3's ``evaluator._process_document_results`` (the code
that turns a doc + its requests + ``process_results`` into a sample record) and writes the files with its
``EvaluationTracker`` exactly as ``lmms_eval.__main__.cli_evaluate`` does (``save_results_aggregated`` then
``save_results_samples`` per task), so file names, the model sub-folder and the record layout are lmms-eval's.
Scoring goes through the task suite's real hooks (``icu_tasks.harness.hooks.process_results`` /
``mc_process_results``). The one stand-in is the aggregated ``results`` dict, reproduced with the keys
``simple_evaluate`` puts there (results, group_subtasks, configs, versions, n-shot, higher_is_better,
n-samples, config, date) — the reader only uses ``configs`` and ``n-samples``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from icu_tasks.report.plots import CURVE_SIZE, DPI, FIRST_TASK_SIZE, HEATMAP_SIZE
from icu_tasks.report.results import load_run
from icu_tasks.report.write import write_report
from tests.cli_helpers import call_cli
from tests.lmms_eval_output import doc as _doc
from tests.lmms_eval_output import write_lmms_eval_output
from tests.subprocess_env import subprocess_env

N_DOCS = 4  # docs per (task, view) cell: accuracies are multiples of 1/4
# Target contains-accuracy A[k][j] per stage (rows k = 0..3) and forget task (columns j = 1..4; task 4 is never
# forgotten: a future task that no metric may read). The vanilla row is below 1 on purpose, so a metric that
# forgets to divide by A[0][j] (or R[0], U[0]) gets a different number. QA has a stage that made its own task
# *more* known (A[3][3] = 0.75 > A[0][3] = 0.5: FE term clipped to 0) and a task that came back above its
# vanilla accuracy (A[2][1] = 0.75 > A[0][1] = 0.5: negative HFP term). VQA task 1 drops further after its
# own stage (A[3][1] = 0 < A[1][1] = 0.25: a negative change that rebound must not count).
A_VQA = [
    [0.75, 1.0, 1.0, 0.75],
    [0.25, 1.0, 1.0, 0.75],
    [0.5, 0.0, 0.75, 0.75],
    [0.0, 0.25, 0.0, 0.5],
]
A_QA = [
    [0.5, 1.0, 0.5, 1.0],
    [0.25, 1.0, 0.5, 1.0],
    [0.75, 0.25, 0.5, 1.0],
    [0.25, 0.5, 0.75, 0.75],
]
R_VQA = [0.75, 0.75, 0.5, 0.5]
R_QA = [1.0, 0.75, 0.75, 0.5]
UTIL = [0.75, 0.75, 0.5, 0.5]
# Retain pools both views (4 docs each): R = (R_VQA + R_QA) / 2 = [0.875, 0.75, 0.625, 0.5].
R_POOLED = [0.875, 0.75, 0.625, 0.5]

# The metrics of the full run (stages 0..3 scored), worked out by hand from the tables above. No holdout split
# is scored, so the base rate B[0] = 0 and f[k][j] = clip(1 - A[k][j] / A[0][j], 0, 1); every A[0][j] >= 0.5
# clears the 0.1 margin.
# FE = mean_k f[k][k]
#   VQA: k=1: 1 - 0.25/0.75 = 2/3; k=2: 1 - 0/1 = 1; k=3: 1 - 0/1 = 1          -> (2/3 + 2)/3 = 8/9
#   QA:  k=1: 1 - 0.25/0.5 = 0.5; k=2: 1 - 0.25/1 = 0.75; k=3: 1 - 0.75/0.5 = -0.5, clipped to 0
#                                                                  -> (0.5 + 0.75 + 0)/3 = 5/12
# HFP = mean over (k, j<k) of f[k][j], pairs (2,1), (3,1), (3,2)
#   VQA: 1 - 0.5/0.75 = 1/3; 1 - 0/0.75 = 1; 1 - 0.25/1 = 0.75                -> (25/12)/3 = 25/36
#   QA:  1 - 0.75/0.5 = -0.5 -> clipped to 0; 1 - 0.25/0.5 = 0.5; 1 - 0.5/1 = 0.5 -> 1/3
# rebound = mean over the same pairs of max(0, A[k][j] - A[j][j])
#   VQA: 0.5 - A[1][1]=0.25 = 0.25; max(0, 0 - 0.25) = 0; 0.25 - A[2][2]=0 = 0.25 -> 0.5/3 = 1/6
#   QA:  0.75 - 0.25 = 0.5; max(0, 0.25 - 0.25) = 0; 0.5 - A[2][2]=0.25 = 0.25  -> 0.75/3 = 1/4
# RU_k = (R[k]/R[0] + U[k]/U[0]) / 2 with R[0] = 0.875 = 7/8, U[0] = 0.75 = 3/4
#   RU_1 = (6/7 + 1)/2 = 13/14 = 39/42; RU_2 = (5/7 + 2/3)/2 = 29/42; RU_3 = (4/7 + 2/3)/2 = 26/42
#   RU = (39 + 29 + 26)/42/3 = 94/126 = 47/63
# largest RU drop = max over consecutive scored stages of max(0, RU_{k-1} - RU_k) (RU_0 = 1 = 42/42): falls
#   3/42, 10/42, 3/42 -> 10/42 = 5/21, into stage 2
# RU_final = RU_3 = 26/42 = 13/21
# collateral = mean over k >= 1, j > k (task 4 included) of f[k][j]: 6 cells (1,2) (1,3) (1,4) (2,3) (2,4) (3,4)
#   VQA: 1 - 1/1 = 0; 0; 1 - 0.75/0.75 = 0; 1 - 0.75/1 = 0.25; 0; 1 - 0.5/0.75 = 1/3 -> (7/12)/6 = 7/72
#   QA:  0; 1 - 0.5/0.5 = 0; 0; 0; 0; 1 - 0.75/1 = 0.25                          -> 0.25/6 = 1/24
# pooled view (4 + 4 items per cell, so the mean of the two tables):
#   A0 = [0.625, 1, 0.75, 0.875], A1 = [0.25, 1, ...], A2 = [0.625, 0.125, ...], A3 = [0.125, 0.375, 0.375, ...]
#   FE = (1 - 0.25/0.625 = 0.6; 1 - 0.125/1 = 0.875; 1 - 0.375/0.75 = 0.5)/3 = 1.975/3 = 79/120
#   HFP = (1 - 0.625/0.625 = 0; 1 - 0.125/0.625 = 0.8; 1 - 0.375/1 = 0.625)/3 = 1.425/3 = 19/40
# ICU = harmonic mean of FE, HFP and RU_final = 3 / (1/FE + 1/HFP + 21/13)
#   VQA: 3 / (9/8 + 36/25 + 21/13); QA: 3 / (12/5 + 3 + 21/13); pooled (the headline): 3 / (120/79 + 40/19 + 21/13)
EXPECTED_FULL = {
    "icu": 3 / (120 / 79 + 40 / 19 + 21 / 13),
    "icu_vqa": 3 / (9 / 8 + 36 / 25 + 21 / 13),
    "icu_qa": 3 / (12 / 5 + 3 + 21 / 13),
    "fe_pooled": 79 / 120,
    "hfp_pooled": 19 / 40,
    "collateral_vqa": 7 / 72,
    "collateral_qa": 1 / 24,
    "over_forgetting_vqa": 0.0,
    "ru_final": 13 / 21,
    "fe_vqa": 8 / 9,
    "fe_qa": 5 / 12,
    "hfp_vqa": 25 / 36,
    "hfp_qa": 1 / 3,
    "rebound_vqa": 1 / 6,
    "rebound_qa": 1 / 4,
    "ru": 47 / 63,
    "ru_max_drop": 5 / 21,
    "ru_max_drop_stage": 2,
}
RU_PER_STAGE = [1.0, 39 / 42, 29 / 42, 26 / 42]
# The partial run: the same tables, stage 3 not scored (a NaN row), so only stages 1..2 count.
#   FE VQA (2/3 + 1)/2 = 5/6; FE QA (0.5 + 0.75)/2 = 5/8; HFP and rebound: only the pair (2,1):
#   HFP VQA 1/3, HFP QA -0.5 clipped to 0; rebound VQA 0.25, QA 0.5;
#   RU = (39/42 + 29/42)/2 = 68/84 = 17/21; largest RU drop 10/42 (falls 3/42, 10/42), into stage 2
#   RU_final = RU_2 = 29/42 (stage 3 not scored: the last scored stage stands in)
#   collateral over (1,2) (1,3) (1,4) (2,3) (2,4): VQA 0.25/5 = 0.05 (from (2,3)); QA 0
#   pooled HFP: only (2,1): 1 - 0.625/0.625 = 0 -> ICU (pooled) = 0 (the harmonic mean with a 0 part)
EXPECTED_PARTIAL = {
    "icu": 0.0,
    "ru_final": 29 / 42,
    "collateral_vqa": 0.05,
    "collateral_qa": 0.0,
    "fe_vqa": 5 / 6,
    "fe_qa": 5 / 8,
    "hfp_vqa": 1 / 3,
    "hfp_qa": 0.0,
    "rebound_vqa": 0.25,
    "rebound_qa": 0.5,
    "ru": 17 / 21,
    "ru_max_drop": 5 / 21,
    "ru_max_drop_stage": 2,
}


def _stage_docs(k: int) -> dict[str, list[tuple[dict, bool]]]:
    """task name -> [(doc, answered correctly?)] for stage k, following the target tables above."""
    tasks: dict[str, list[tuple[dict, bool]]] = {}
    for view, table in (("vqa", A_VQA), ("qa", A_QA)):
        rows = []
        for j, acc in enumerate(table[k], start=1):
            n_right = round(acc * N_DOCS)
            rows += [(_doc(f"f{view}", "forget", view, j, i), i < n_right) for i in range(N_DOCS)]
        tasks[f"icu_forget_{view}"] = rows
    for view, values in (("vqa", R_VQA), ("qa", R_QA)):
        n_right = round(values[k] * N_DOCS)
        tasks[f"icu_retain_{view}"] = [
            (_doc("r", "retain_eval", view, 0, i), i < n_right) for i in range(N_DOCS)
        ]
    n_right = round(UTIL[k] * N_DOCS)
    tasks["icu_utility"] = [(_doc("u", "utility", "vqa", 0, i), i < n_right) for i in range(N_DOCS)]
    return tasks


def _make_run(root: Path, name: str, method: str, stages_scored: range, stages: int = 3) -> Path:
    root.mkdir(parents=True)
    (root / "run.json").write_text(json.dumps({"name": name, "method": method, "stages": stages}))
    for k in range(1, stages + 1):
        (root / f"stage_{k}").mkdir()
        (root / f"stage_{k}" / "stage.json").write_text(json.dumps({"method": method, "forget_tasks": [k]}))
    for k in stages_scored:
        write_lmms_eval_output(root / "eval" / f"stage_{k}", _stage_docs(k), date=f"20260101_00000{k}")
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("runs")
    full = _make_run(base / "npo_run", "npo-demo", "npo_diff", range(4))
    partial = _make_run(base / "ga_run", "ga-demo", "ga", range(3))  # stage 3 trained but not scored yet
    return {"full": full, "partial": partial}


def _png(path: Path, size: tuple[float, float]) -> None:
    img = Image.open(path)
    assert img.size == (int(size[0] * DPI), int(size[1] * DPI))
    # a blank canvas has zero variance; any drawn axis, line or cell puts it far above 1 grey level
    assert np.asarray(img.convert("L"), dtype=float).std() > 1.0


def test_lmms_eval_layout_is_what_the_reader_expects(runs):
    folder = runs["full"] / "eval" / "stage_0" / "icu__vanilla"  # lmms-eval's sanitize_model_name(pretrained)
    assert (folder / "20260101_000000_results.json").is_file()
    rec = json.loads((folder / "20260101_000000_samples_icu_forget_vqa.jsonl").read_text().splitlines()[0])
    assert (
        rec["contains"] is not None and rec["contains"]["forget_task"] == 1
    )  # payload under the metric name
    assert "doc" not in rec and "arguments" not in rec  # lmms-eval drops them when saving


def test_matrices_from_samples(runs):
    run = load_run(runs["full"])
    assert (run.name, run.method, run.stages, run.tasks) == ("npo-demo", "npo_diff", 3, 4)
    np.testing.assert_allclose(run.A_vqa, A_VQA)
    np.testing.assert_allclose(run.A_qa, A_QA)
    np.testing.assert_allclose(run.retain_by_view["vqa"], R_VQA)
    np.testing.assert_allclose(run.retain_by_view["qa"], R_QA)
    np.testing.assert_allclose(run.retain, R_POOLED)
    np.testing.assert_allclose(run.utility, UTIL)
    assert run.missing == [] and run.notes == []
    # the per-item scores behind each mean are kept with their profile (the bootstrap's unit):
    # A[1][1] VQA = 0.25 -> docs of profiles p1-0 .. p1-3 scored 1, 0, 0, 0
    t, units = run.items.accuracy, run.items.units
    cell = t.select(stage=1, split="forget", views=["vqa"], tasks=[1])
    assert [units.keys[u] for u in t.unit[cell]] == [("forget", f"p1-{i}") for i in range(4)]
    assert t.values["score"][cell].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert t.values["score"][t.select(stage=0, split="utility")].tolist() == [1.0, 1.0, 1.0, 0.0]
    # strata: each forget task's profiles, and the retain-eval and utility units
    assert units.stratum_names == ("forget/1", "forget/2", "forget/3", "forget/4", "retain_eval", "utility")
    assert np.isnan(run.holdout["vqa"]).all()  # no holdout split in these files
    assert run.n_samples == [4 * N_DOCS + 4 * N_DOCS + N_DOCS + N_DOCS + N_DOCS] * 4  # 44 per stage
    np.testing.assert_allclose(run.answer_entropy[0], FLUENCY_STAGE0)


# Short-answer entropy (answer_entropy) of stage 0 by hand: the mean over its 44 generated answers of ROME's n-gram entropy,
# mean(2/3 * H_2, 4/3 * H_3) with H_n = log2(number of n-grams) when every n-gram occurs once.
#   right, even doc "value fvqa 1 0": 4 tokens, 3 bigrams, 2 trigrams -> (2/3 log2 3 + 4/3 log2 2)/2
#   right, odd doc "It is value fvqa 1 1.": 7 tokens, 6 bigrams, 5 trigrams -> (2/3 log2 6 + 4/3 log2 5)/2
#   wrong "I do not know this person at all": 8 tokens -> (2/3 log2 7 + 4/3 log2 6)/2
# Stage 0 answers (right docs are i < 4·acc): forget VQA n = 3,4,4,3 -> 8 even, 6 odd, 2 wrong; forget QA
# n = 2,4,2,4 -> 6 even, 6 odd, 4 wrong; retain VQA n = 3 -> 2/1/1; retain QA n = 4 -> 2/2/0; utility n = 3
# -> 2/1/1. Total 20 even, 16 odd, 8 wrong.
_SHORT = (2 / 3 * math.log2(3) + 4 / 3 * math.log2(2)) / 2
_SENTENCE = (2 / 3 * math.log2(6) + 4 / 3 * math.log2(5)) / 2
_WRONG = (2 / 3 * math.log2(7) + 4 / 3 * math.log2(6)) / 2
FLUENCY_STAGE0 = (20 * _SHORT + 16 * _SENTENCE + 8 * _WRONG) / 44  # = 1.9029


def test_exact_match_metric_differs(runs):
    run = load_run(runs["full"], metric="exact_match")
    # Right answers are exact only for even doc index i (odd ones say "It is ...."): of the n = 4·acc right
    # docs i < n, the exact ones are i = 0 (n >= 1) and i = 2 (n >= 3). A_VQA's n per cell and exact count:
    #   k=0: n 3,4,4,3 -> 2,2,2,2; k=1: n 1,4,4,3 -> 1,2,2,2; k=2: n 2,0,3,3 -> 1,0,2,2; k=3: n 0,1,0,2 -> 0,1,0,1
    expected = [
        [0.5, 0.5, 0.5, 0.5],
        [0.25, 0.5, 0.5, 0.5],
        [0.25, 0.0, 0.5, 0.5],
        [0.0, 0.25, 0.0, 0.25],
    ]
    np.testing.assert_allclose(run.A_vqa, expected)


def test_partial_run_has_nan_rows_and_says_so(runs):
    run = load_run(runs["partial"])
    assert run.stages == 3 and run.missing == [3]
    assert np.isnan(run.A_vqa[3]).all() and math.isnan(run.retain[3])
    np.testing.assert_allclose(run.A_vqa[:3], A_VQA[:3])
    assert any("stage(s) 3 not scored" in n for n in run.notes)


def test_newest_complete_file_wins_per_task(tmp_path):
    run_dir = _make_run(tmp_path / "r", "merge", "ga", range(2), stages=1)
    stage1 = run_dir / "eval" / "stage_1"
    # a later re-run of the forget VQA task only, where everything is forgotten: it overrides that task ...
    docs = {"icu_forget_vqa": [(d, False) for d, _ in _stage_docs(1)["icu_forget_vqa"]]}
    write_lmms_eval_output(stage1, docs, date="20260102_000000")
    # ... and an even later one that was killed while writing samples: ignored
    killed = write_lmms_eval_output(
        stage1, {"icu_forget_vqa": _stage_docs(1)["icu_forget_vqa"]}, date="20260103_000000"
    )
    path = killed / "20260103_000000_samples_icu_forget_vqa.jsonl"
    path.write_text(path.read_text()[:-40])
    run = load_run(run_dir)
    np.testing.assert_allclose(run.A_vqa[1], [0.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(run.A_qa[1], A_QA[1])  # the other tasks come from the first evaluation
    assert any("incomplete" in n for n in run.notes)


def test_mc_accuracy_reads_multiple_choice_tasks(tmp_path):
    run_dir = tmp_path / "mc"
    run_dir.mkdir()
    for k in range(2):
        docs = {f"{t}_mc": rows for t, rows in _stage_docs(k).items()}
        write_lmms_eval_output(run_dir / "eval" / f"stage_{k}", docs, date="20260101_000000", mc=True)
    run = load_run(run_dir, metric="mc_accuracy")
    np.testing.assert_allclose(run.A_vqa, A_VQA[:2])
    assert run.method == "mc"  # no run.json/stage.json: the dir name
    assert math.isnan(run.answer_entropy[0])  # no generated answers in MC tasks
    assert load_run(run_dir).missing == [0, 1]  # nothing scored with `contains`


def test_report_files_and_figures(runs, tmp_path):
    out = tmp_path / "report"
    report = write_report([load_run(runs["full"]), load_run(runs["partial"])], out)
    assert [r["name"] for r in report["runs"]] == ["npo-demo", "ga-demo"]
    on_disk = json.loads((out / "report.json").read_text())
    for summary in (report["runs"], on_disk["runs"]):
        for run, expected in zip(summary, (EXPECTED_FULL, EXPECTED_PARTIAL), strict=True):
            got = {key: run["metrics"][key] for key in expected}
            assert got == pytest.approx(expected), run["name"]
            assert run["per_stage"]["answer_entropy"][0] == pytest.approx(FLUENCY_STAGE0)
            assert run["metrics"]["fluency_stage0"] is None  # fluency = long-form entropy; none scored here
        assert summary[0]["per_stage"]["ru"] == pytest.approx(RU_PER_STAGE)
        assert summary[1]["per_stage"]["ru"][:3] == pytest.approx(RU_PER_STAGE[:3])
    full, partial = on_disk["runs"]
    # every accuracy metric was defined and scored; only what needs the likelihood / MIA tasks has a note
    assert {key.rsplit("_", 1)[0] for key in full["metric_notes"]} == {"privacy", "forget_quality", "icu"}
    assert (
        full["headline"]["formula"] == "H(FE, HFP, RU_final)"
        and "no membership-inference" in (full["headline"]["why"])
    )
    assert partial["missing_stages"] == [3] and partial["metrics"]["fluency_final_stage"] is None
    assert partial["per_stage"]["ru"][3] is None  # NaN -> null, valid JSON
    assert partial["forget"]["vqa"][3] == [None] * 4
    assert any("skipped stage(s) 3" in n for n in partial["metric_notes"]["fe_vqa"])
    md = (out / "report.md").read_text()
    # the table row: ICU, FE VQA/QA, HFP VQA/QA, rebound VQA/QA, collateral VQA/QA, RU, RU final, largest RU
    # drop, privacy LOSS/zlib, headline formula (see EXPECTED_*; ICU full = 3 / (120/79 + 40/19 + 21/13) = 0.5726)
    assert (
        "| npo-demo | npo_diff | 3/3 | 0.573 | 0.889 | 0.417 | 0.694 | 0.333 | 0.167 | 0.250 | 0.097 | 0.042 "
        "| 0.746 | 0.619 | 0.238 (stage 2) | n/a | n/a | H(FE, HFP, RU_final) |" in md
    )
    assert (
        "| ga-demo | ga | 2/3 | 0.000 | 0.833 | 0.625 | 0.333 | 0.000 | 0.250 | 0.500 | 0.050 | 0.000 "
        "| 0.810 | 0.690 | 0.238 (stage 2) | n/a | n/a | H(FE, HFP, RU_final) |" in md
    )
    assert "no holdout split scored: base rate B[0] = 0" in md
    # every cell and headline metric carries its bootstrap interval, and the interval holds the estimate
    ci = full["intervals"]
    assert ci["n_boot"] == 1000 and ci["seed"] == 0
    assert ci["strata"] == ["forget/1", "forget/2", "forget/3", "forget/4", "retain_eval", "utility"]
    for key, value in full["metrics"].items():
        if key in ci["metrics"] and value is not None:
            lo, hi = ci["metrics"][key]
            assert lo <= value <= hi, key
    for name, rows in ci["series"].items():
        for value, interval in zip(full["per_stage"][name], rows, strict=True):
            assert (value is None) == (interval is None) and (
                value is None or interval[0] <= value <= interval[1]
            )
    for view in ("vqa", "qa", "pooled"):
        for row, ci_row in zip(full["forget"][view], ci["forget"][view], strict=True):
            assert all(lo <= a <= hi for a, (lo, hi) in zip(row, ci_row, strict=True))
    assert ci["forget"]["vqa"][1][1] == [1.0, 1.0]  # A[1][2] = 1: four right answers, no variation
    assert f"| 0.889 [{ci['metrics']['fe_vqa'][0]:.2f}, {ci['metrics']['fe_vqa'][1]:.2f}] |" in md
    # the full matrix, future tasks included: row k = 1 has all four tasks
    assert "| 1 | 0.25 [" in md and "| j=4 |" in md
    for run in report["runs"]:
        figs = run["figures"]
        _png(out / figs["forget_vqa"], HEATMAP_SIZE)
        _png(out / figs["forget_qa"], HEATMAP_SIZE)
        _png(out / figs["retain_utility"], CURVE_SIZE)
        for view in ("vqa", "qa", "pooled"):
            _png(out / figs[f"collateral_{view}"], HEATMAP_SIZE)
        assert f"]({figs['forget_vqa']})" in md
    _png(out / "first_task.png", FIRST_TASK_SIZE)
    assert not list(out.glob(".*.tmp"))
    a = np.asarray(Image.open(out / report["runs"][0]["figures"]["forget_vqa"]).convert("L"), dtype=float)
    b = np.asarray(Image.open(out / report["runs"][0]["figures"]["forget_qa"]).convert("L"), dtype=float)
    assert np.abs(a - b).mean() > 0.1  # two different matrices draw two different heatmaps


def _cli(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    """``icu-bench ARGS`` in a subprocess whose caches (matplotlib's font cache...) live under ``tmp``."""
    code = "import sys; from icu_unlearn.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp,
        env=subprocess_env(tmp),
    )


@pytest.mark.subprocess
def test_cli_report_default_out(runs, tmp_path):
    proc = _cli(tmp_path, "report", str(runs["full"]))
    assert proc.returncode == 0, proc.stderr
    assert (runs["full"] / "report" / "report.md").is_file()
    # the hand-computed metrics of EXPECTED_FULL, rounded as printed
    assert (
        "icu=0.573, fe_vqa=0.889, fe_qa=0.417, hfp_vqa=0.694, hfp_qa=0.333, rebound_vqa=0.167, "
        "rebound_qa=0.250, collateral_vqa=0.097, collateral_qa=0.042, ru=0.746, ru_final=0.619, "
        "ru_max_drop=0.238, privacy_loss=n/a, privacy_zlib=n/a" in proc.stdout
    )


def test_cli_errors_are_one_line_and_write_nothing(runs, tmp_path):
    """In-process through ``main()`` (the subprocess path of ``report`` is test_cli_report_default_out's)."""
    not_a_run = tmp_path / "empty"
    not_a_run.mkdir()
    proc = call_cli(["report", not_a_run], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {not_a_run} is not a run dir (no run.json, stage_K/ or eval/stage_K/ inside)"
    ]
    assert list(not_a_run.iterdir()) == []
    proc = call_cli(["report", runs["full"], runs["partial"]], tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: several run dirs: pass --out")
    out = tmp_path / "cmp"
    proc = call_cli(["report", runs["full"], not_a_run, "--out", out], tmp_path)
    assert proc.returncode == 2 and not out.exists()  # all runs are read before anything is written


def test_damaged_files_and_odd_stage_records_are_noted(tmp_path):
    run_dir = _make_run(tmp_path / "d", "damaged", "ga", range(3), stages=2)
    (run_dir / "stage_2" / "stage.json").write_text(json.dumps({"method": "ga", "forget_tasks": [5]}))
    results = next((run_dir / "eval" / "stage_1").rglob("*_results.json"))
    results.write_text(results.read_text()[:100])  # killed while writing the results file
    run = load_run(run_dir)
    assert run.missing == [1]
    assert np.isnan(run.A_vqa[1]).all()
    np.testing.assert_allclose(run.A_vqa[2], A_VQA[2])
    assert any("unreadable results file" in n for n in run.notes)
    assert any("stage 2 forgot task(s) [5]" in n for n in run.notes)


def test_holdout_split_sets_the_base_rate(tmp_path):
    # stage 0 and 1 of the tables above plus a holdout split (never-seen profiles): B VQA = 1/4, B QA = 2/4
    run_dir = tmp_path / "h"
    for k in range(2):
        docs = _stage_docs(k)
        for view, n_right in (("vqa", 1), ("qa", 2)):
            docs[f"icu_holdout_{view}"] = [
                (_doc("h", "holdout", view, 0, i), i < n_right) for i in range(N_DOCS)
            ]
        write_lmms_eval_output(run_dir / "eval" / f"stage_{k}", docs, date=f"20260101_00000{k}")
    run = load_run(run_dir)
    assert run.holdout["vqa"].tolist() == [0.25, 0.25] and run.holdout["qa"].tolist() == [0.5, 0.5]
    report = write_report([run], tmp_path / "out", n_boot=50)
    s = report["runs"][0]
    assert s["base_rate"] == {"vqa": 0.25, "qa": 0.5, "pooled": 0.375}  # pooled: 3 of 8 holdout items
    m = s["metrics"]
    # FE VQA: (A[0][1] - B) / (A[0][1] - B) with A[1][1] = B: (0.75 - 0.25)/(0.75 - 0.25) = 1 (2/3 with B = 0)
    assert m["fe_vqa"] == pytest.approx(1.0)
    # QA: A[0][1] - B = 0.5 - 0.5 = 0 < 0.1 -> task 1 excluded, FE undefined; A[1][1] = 0.25 is 0.25 below B
    assert m["fe_qa"] is None and any("did not know" in n for n in s["metric_notes"]["fe_qa"])
    assert m["over_forgetting_qa"] == pytest.approx(0.25)
    # pooled: A[0][1] = 5/8, A[1][1] = 2/8, B = 3/8 -> (5/8 - 2/8)/(5/8 - 3/8) = 1.5, clipped to 1
    assert m["fe_pooled"] == pytest.approx(1.0)
    assert not any("no holdout split" in n for n in s["notes"])


def test_paraphrase_samples_stay_out_of_the_matrices(tmp_path):
    """Samples of the _para tasks (payload "phrasing": "paraphrase") never enter A, R, U or B: all of them
    answered wrongly here, the matrices are still exactly the tables above."""
    run_dir = tmp_path / "p"
    for k in range(2):
        docs = _stage_docs(k)
        for view in ("vqa", "qa"):
            for split, task_ids in (("forget", range(1, 5)), ("retain_eval", [0]), ("holdout", [0])):
                name = {"forget": "forget", "retain_eval": "retain", "holdout": "holdout"}[split]
                docs[f"icu_{name}_{view}_para"] = [
                    ({**d, "id": d["id"] + "-para", "phrasing": "paraphrase", "core_id": d["id"]}, False)
                    for j in task_ids
                    for d in (_doc("p", split, view, j, i) for i in range(N_DOCS))
                ]
        write_lmms_eval_output(run_dir / "eval" / f"stage_{k}", docs, date=f"20260101_00000{k}")
    run = load_run(run_dir)
    np.testing.assert_allclose(run.A_vqa[:2], np.asarray(A_VQA[:2]))
    np.testing.assert_allclose(run.A_qa[:2], np.asarray(A_QA[:2]))
    np.testing.assert_allclose(run.retain[:2], R_POOLED[:2])
    np.testing.assert_allclose(run.utility[:2], UTIL[:2])
    assert np.isnan(run.holdout["vqa"]).all()  # the paraphrased holdout docs are not a base rate either
    # every stage has 4 x 4 forget + 4 retain docs per view + 4 utility docs = 44 core samples
    assert run.n_samples == [44, 44]


def _longform_doc(split: str, forget_task: int, i: int) -> dict:
    values = [f"Name{i} Smith", f"MR-{10000 + i}", f"{i} Oak St, Hullport"]
    return {
        "id": f"{split}-{forget_task}-{i}-longform",
        "forget_task": forget_task,
        "split": split,
        "view": "qa",
        "field": "longform",
        "phrasing": "longform",
        "question": f"Summarise the medical report of Name{i} Smith.",
        "answer": f"{values[0]} (ID {values[1]}) lives at {values[2]}.",
        "values": values,
    }


def test_longform_samples_become_fluency_and_leakage_rows(runs, tmp_path):
    """Real lmms-eval sample files of the long-form tasks: stage 0 writes every summary, stage 3 collapses
    to "the the the the"; the matrices do not change, the per-stage fluency and leakage rows do."""
    import shutil

    root = tmp_path / "run"
    shutil.copytree(runs["full"], root)
    for k, fluent in ((0, True), (3, False)):
        tasks = {
            "icu_longform_forget": [(_longform_doc("forget", 1 + i % 2, i), fluent) for i in range(4)],
            "icu_longform_retain": [(_longform_doc("retain_eval", 0, i), True) for i in range(2)],
        }
        write_lmms_eval_output(root / "eval" / f"stage_{k}", tasks, date=f"20260101_10000{k}", longform=True)
    run, before = load_run(root), load_run(runs["full"])
    np.testing.assert_allclose(run.A_vqa, before.A_vqa)
    assert run.n_samples == before.n_samples  # long-form samples carry no accuracy
    # "Name0 Smith (ID MR-10000) lives at 0 Oak St, Hullport.": 16 tokens (name0 smith ( id mr - 10000 ) lives
    # at 0 oak st , hullport .), all 15 bigrams and 14 trigrams distinct -> (2/3 log2 15 + 4/3 log2 14) / 2
    # per summary (every i gives the same pattern); a collapsed one scores 0 and repetition 1 - 1/2.
    fluent = (2 / 3 * math.log2(15) + 4 / 3 * math.log2(14)) / 2
    np.testing.assert_allclose(run.longform["fluency"], [fluent, math.nan, math.nan, fluent * 2 / 6])
    np.testing.assert_allclose(run.longform["repetition"], [0.0, math.nan, math.nan, 0.5 * 4 / 6])
    # leakage of the forget profiles (tasks 1 and 2): stage 0 requested none of them (all pending), stage 3
    # requested both (none pending)
    np.testing.assert_allclose(run.longform["leak_requested"], [math.nan, math.nan, math.nan, 0.0])
    np.testing.assert_allclose(run.longform["leak_pending"], [1.0, math.nan, math.nan, math.nan])
    np.testing.assert_allclose(run.longform["leak_retain"], [1.0, math.nan, math.nan, 1.0])
    report = write_report([run], tmp_path / "report", n_boot=0)
    summary = report["runs"][0]
    assert summary["metrics"]["fluency_stage0"] == pytest.approx(fluent)
    assert summary["metrics"]["fluency_final_stage"] == 3
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| fluency ↑ | rep ↓ | leak req. ↓ | leak pending | leak R ↑ | samples |" in md
    assert f"| {fluent:.3f} | 0.000 | n/a | 1.000 | 1.000 | 44 |" in md
    assert f"| {fluent / 3:.3f} | 0.333 | 0.000 | n/a | 1.000 | 44 |" in md
