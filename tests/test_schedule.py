"""The evaluation schedule (score every N stages, a window of forget tasks) and the cost of a run before it runs.

Scheduled run dirs are written with lmms-eval 0.7.3's own code (``tests/lmms_eval_output.py``) from the target
tables of ``tests/test_report.py``, leaving out what the schedule does not score; the metrics expected from
what is left are worked out by hand below. The dry-run counts are checked against the data's own parquet.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from icu_tasks.errors import ConfigError
from icu_tasks.harness import hooks
from icu_tasks.records.schedule import FORGET_TASKS_ENV, EvalSchedule, format_tasks, parse_tasks
from icu_tasks.report.results import load_run
from icu_tasks.report.write import write_report
from tests.cli_helpers import call_cli
from tests.lmms_eval_output import write_lmms_eval_output
from tests.test_report import A_QA, A_VQA, _stage_docs


def test_task_sets_parse_and_format():
    assert parse_tasks("1-3,7") == {1, 2, 3, 7}
    assert parse_tasks(" 5 , 2-2 ,") == {2, 5}
    assert format_tasks({7, 1, 2, 3, 9, 10}) == "1-3,7,9-10"
    assert format_tasks([4]) == "4"
    for bad in ("0", "3-1", "a", "1-x", ",", "-2"):
        with pytest.raises(ConfigError, match=FORGET_TASKS_ENV):
            parse_tasks(bad)


def test_schedule_stages_and_windows():
    assert EvalSchedule().stages(3) == [0, 1, 2, 3] and EvalSchedule().full
    every3 = EvalSchedule(every=3)
    assert every3.stages(10) == [0, 3, 6, 9, 10]  # the last stage always
    assert every3.stages(9) == [0, 3, 6, 9]
    window = EvalSchedule(window=1)
    assert window.forget_tasks(0, 10) is None  # stage 0: every task (the reference A[0][j])
    assert window.forget_tasks(2, 10) == {1, 2, 3}
    assert window.forget_tasks(9, 10) is None  # 9 + 1 covers all 10 tasks
    assert EvalSchedule(window=0).forget_tasks(4, 10) == {1, 2, 3, 4}
    for bad in ({"every": 0}, {"window": -1}, {"every": True}):
        with pytest.raises(ConfigError):
            EvalSchedule(**bad)


def test_hooks_keep_only_the_named_forget_tasks(small_data_dir, monkeypatch):
    table = pq.read_table(small_data_dir / "qa.parquet").to_pylist()
    per_task = Counter(r["forget_task"] for r in table if r["split"] == "forget" and r["view"] == "vqa")
    retain = sum(1 for r in table if r["split"] == "retain_eval" and r["view"] == "vqa")
    monkeypatch.setenv("ICU_DATA_DIR", str(small_data_dir))
    monkeypatch.setenv(FORGET_TASKS_ENV, "1,3")
    docs = hooks.forget_vqa_docs()
    assert sorted(Counter(docs["forget_task"]).items()) == [(1, per_task[1]), (3, per_task[3])]
    assert len(hooks.retain_vqa_docs()) == retain  # the filter touches forget docs only
    monkeypatch.setenv(FORGET_TASKS_ENV, "7")  # the small data has tasks 1..3
    with pytest.raises(hooks.DataUnavailable, match="ICU_FORGET_TASKS=7: forget task 7 does not exist"):
        hooks.forget_vqa_docs()
    monkeypatch.setenv(FORGET_TASKS_ENV, "two")
    with pytest.raises(hooks.DataUnavailable, match="'two' is not a forget task id"):
        hooks.forget_vqa_docs()


# A 3-stage run with 4 forget tasks scored with eval_every = 2 (stages 0, 2, 3) and eval_window = 1 (stage 2
# scores tasks 1..3; stage 3 reaches task 4 anyway). Missing: the stage-1 row and the cell A[2][4].
# From the VQA table (B[0] = 0, f = clip(1 - A[k][j] / A[0][j], 0, 1)):
#   FE: k=2: 1 - 0/1 = 1; k=3: 1 - 0/1 = 1 -> 1 (stage 1 skipped)
#   HFP: (2,1) 1 - 0.5/0.75 = 1/3; (3,1) 1; (3,2) 1 - 0.25/1 = 0.75 -> 25/36 (no stage-1 term in HFP)
#   collateral: (2,3) 1 - 0.75/1 = 0.25; (2,4) not scored; (3,4) 1 - 0.5/0.75 = 1/3 -> 7/24
#   rebound: (2,1) and (3,1) need A[1][1], not scored; (3,2) 0.25 - A[2][2] = 0.25 -> 0.25
#   RU_2 = 29/42, RU_3 = 26/42 (test_report's values) -> RU = 55/84; largest RU drop between consecutive
#   scored stages (0, 2) and (2, 3): falls 1 - 29/42 = 13/42 and 3/42 -> 13/42, into stage 2 (from stage 0)
SCHEDULED = {
    "fe_vqa": 1.0,
    "hfp_vqa": 25 / 36,
    "collateral_vqa": 7 / 24,
    "rebound_vqa": 0.25,
    "ru": 55 / 84,
    "ru_max_drop": 13 / 42,
    "ru_max_drop_stage": 2,
}


@pytest.fixture(scope="module")
def scheduled_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scheduled") / "ga_run"
    root.mkdir()
    record = {"name": "sched", "method": "ga", "stages": 3, "eval_every": 2, "eval_window": 1}
    (root / "run.json").write_text(json.dumps(record))
    for k in range(1, 4):
        (root / f"stage_{k}").mkdir()
        (root / f"stage_{k}" / "stage.json").write_text(json.dumps({"method": "ga", "forget_tasks": [k]}))
    for k in (0, 2, 3):
        docs = _stage_docs(k)
        if k == 2:
            for view in ("vqa", "qa"):
                docs[f"icu_forget_{view}"] = [
                    d for d in docs[f"icu_forget_{view}"] if d[0]["forget_task"] <= 3
                ]
        write_lmms_eval_output(root / "eval" / f"stage_{k}", docs, date=f"20260101_00000{k}")
    return root


def test_scheduled_run_keeps_unscored_cells_missing(scheduled_run, tmp_path):
    run = load_run(scheduled_run)
    assert run.schedule == EvalSchedule(every=2, window=1) and run.missing == [1]
    expected = np.array(A_VQA, dtype=float)
    expected[1, :] = math.nan
    expected[2, 3] = math.nan
    np.testing.assert_array_equal(run.A_vqa, expected)  # NaN where not scored: nothing imputed
    assert np.isnan(run.A_qa[2, 3]) and run.A_qa[3, 3] == A_QA[3][3]
    assert run.missing_cells("vqa") == {
        "cells": 16, "missing": 5, "unscored_stage": 4, "outside_window": 1, "other": 0,
    }  # fmt: skip
    assert any("stage(s) 1 not scored by the schedule" in n for n in run.notes)

    report = write_report([run], tmp_path / "report", n_boot=0)
    s = report["runs"][0]
    for key, value in SCHEDULED.items():
        assert s["metrics"][key] == pytest.approx(value, abs=1e-12), key
    assert s["forget"]["vqa"][2][3] is None and s["forget"]["vqa"][1] == [None] * 4
    assert any("left out 1 unscored cell" in n for n in s["metric_notes"]["collateral_vqa"])
    assert s["metric_notes"]["ru_max_drop"] == [
        "largest fall from stage 0 to stage 2 (no scored stage between)"
    ]
    assert s["missing_cells"]["qa"]["outside_window"] == 1
    md = (tmp_path / "report" / "report.md").read_text()
    assert (
        "forget VQA: 5 of 16 cells A[k][j] not scored (4 in stages not scored, 1 outside the evaluation" in md
    )


def test_full_schedule_reports_no_missing_cell(tmp_path):
    from tests.test_report import _make_run

    run = load_run(_make_run(tmp_path / "full", "full", "npo_diff", range(4)))
    assert run.schedule.full and run.missing_cells("qa")["missing"] == 0


def _expected_requests(data_dir: Path) -> dict[str, Counter]:
    """Generate requests per (split, forget task) of the seven ``icu`` tasks, straight from qa.parquet."""
    rows = pq.read_table(data_dir / "qa.parquet").to_pylist()
    return Counter((r["split"], r["forget_task"]) for r in rows if r["split"] != "retain_train")


def test_dry_run_counts_and_writes_nothing(small_data_dir, tiny_model_dir, tmp_path):
    from icu_unlearn.pipeline.run import RunConfig, dry_run

    counts = _expected_requests(small_data_dir)
    forget = {j: n for (split, j), n in counts.items() if split == "forget"}
    other = {
        s: sum(n for (split, _), n in counts.items() if split == s)
        for s in ("retain_eval", "holdout", "utility")
    }
    config = RunConfig(
        base=str(tiny_model_dir), data=str(small_data_dir), method="ga", stages=3, eval_every=2, eval_window=0
    )
    lines: list[str] = []
    out = tmp_path / "run"
    record = dry_run(config, out, measure_batches=0, log=lines.append)
    assert not out.exists()
    per_stage = [s["requests"] for s in record["per_stage"]]
    full = sum(forget.values()) + sum(other.values())
    # stage 0: all; stage 1: not scored (every 2); stage 2: tasks 1..2 (window 0); stage 3 (last): tasks 1..3
    assert per_stage == [full, 0, forget[1] + forget[2] + sum(other.values()), full]
    assert record["requests_by_family"] == {
        "forget/generate": 2 * sum(forget.values()) + forget[1] + forget[2],
        "retain/generate": 3 * other["retain_eval"],
        "holdout/generate": 3 * other["holdout"],
        "utility/generate": 3 * other["utility"],
    }
    assert record["estimate_s"] is None and any("not measured" in line for line in lines)
    text = "\n".join(lines)
    assert f"requests in total: {sum(per_stage):,}" in text and "not scored (schedule)" in text


def test_cli_dry_run_flags(small_data_dir, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    proc = call_cli(
        ["run", "--dry-run", "--measure-batches", "0", "--base", str(tiny_model_dir), "--data",
         str(small_data_dir), "--method", "ga", "--stages", "2", "--eval-window", "0", "--limit", "5",
         "--out", str(out)],
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "forget tasks j <= k + 0" in proc.stdout and "limit 5 docs per task" in proc.stdout
    # 7 generate tasks (the icu group, holdout included) x at most 5 docs each, 3 scored stages
    assert "requests in total: 105" in proc.stdout
    assert not out.exists()
    bad = call_cli(["run", "--dry-run", "--base", str(tiny_model_dir), "--data", str(small_data_dir),
                   "--eval-every", "0", "--out", str(out)], tmp_path)  # fmt: skip
    assert bad.returncode != 0 and "eval_every must be >= 1" in bad.stderr


@pytest.mark.slow
def test_scheduled_run_scores_what_the_schedule_says(small_data_dir, tiny_model_dir, tmp_path):
    """A real 2-stage run (tiny untrained model, GA, 2 steps, the VQA forget task only) with eval_every 2 and
    window 0: stage 1 is not scored, stage 2 scores forget tasks 1..2 only, and cost.json holds the estimate
    and the measured stages."""
    from icu_unlearn.pipeline.run import RunConfig, run

    config = RunConfig(
        base=str(tiny_model_dir), data=str(small_data_dir), method="ga", stages=2,
        method_args={"max_steps": 2}, tasks=["icu_forget_vqa"], batch_size=16, eval_every=2, eval_window=0,
    )  # fmt: skip
    out = tmp_path / "run"
    lines: list[str] = []
    run(config, out, measure_batches=1, log=lines.append)
    assert sorted(p.name for p in (out / "eval").iterdir()) == ["stage_0", "stage_2"]
    results = json.loads(next((out / "eval" / "stage_2").rglob("*_results.json")).read_text())
    assert results["configs"]["icu_forget_vqa"]["metadata"]["icu_forget_tasks"] == "1-2"
    stage0 = json.loads(next((out / "eval" / "stage_0").rglob("*_results.json")).read_text())
    assert "icu_forget_tasks" not in stage0["configs"]["icu_forget_vqa"]["metadata"]  # stage 0: every task
    cost = json.loads((out / "cost.json").read_text())
    assert [s["scored"] for s in cost["per_stage"]] == [True, False, True]
    assert cost["estimate_s"]["total"] > 0 and cost["measured"]["batches"] == 1
    assert set(cost["actual"]) == {"0", "1", "2"} and "score_s" not in cost["actual"]["1"]
    assert any("ESTIMATE from 1 measured batch" in line for line in lines)
    assert json.loads((out / "run.json").read_text())["eval_window"] == 0
    run_ = load_run(out)
    assert run_.missing == [1] and run_.tasks == 3
    assert run_.missing_cells("vqa") == {
        "cells": 9, "missing": 4, "unscored_stage": 3, "outside_window": 1, "other": 0,
    }  # fmt: skip


def test_run_dir_from_before_the_schedule_resumes_with_the_default(small_data_dir, tiny_model_dir, tmp_path):
    from icu_tasks.errors import StageError
    from icu_unlearn.pipeline.run import RunConfig
    from icu_unlearn.pipeline.rundir import RunDir
    from icu_unlearn.scoring.preflight import check_run_inputs

    rd = RunDir(tmp_path / "old")

    def config(**kw):
        return RunConfig(base=str(tiny_model_dir), data=str(small_data_dir), method="ga", stages=2, **kw)

    _, record = check_run_inputs(config(), rd, overwrite=False, allow_data_mismatch=False)
    old = {k: v for k, v in record.items() if k not in ("eval_every", "eval_window")}  # an older run.json
    rd.root.mkdir()
    rd.config_path.write_text(json.dumps(old))
    _, again = check_run_inputs(config(), rd, overwrite=False, allow_data_mismatch=False)
    assert again == old  # the default schedule is what the older run scored: same config, resumes
    with pytest.raises(StageError, match="differs in: eval_every"):
        check_run_inputs(config(eval_every=2), rd, overwrite=False, allow_data_mismatch=False)
