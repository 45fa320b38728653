"""``icu-bench run --config examples/run_config.yaml``, in-process through ``main()``, on the test fixtures.

The example config runs as shipped — NPO-Diff, 3 stages, its hyper-parameters — with only the paths (the
session's vanilla model and small data set) and the scored tasks (the forget tasks and the holdout pair that
gives the base rate) overridden on the command line. It is also the suite's 3-stage run: forget task 1 must
stay forgotten through stages 2 and 3 (HFP, per view).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from icu_unlearn.cli import main
from tests.fixtures_unlearn import FIXTURE_FACTS

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "run_config.yaml"
TASKS = ["icu_forget_vqa", "icu_forget_qa", "icu_holdout_vqa", "icu_holdout_qa"]
#: Earlier tasks stay forgotten: HFP (mean normalised forgetting of tasks j < k at stages k = 2..T) per view.
HFP_MIN = 0.8


@pytest.fixture(scope="module")
def config_run(tmp_path_factory, vanilla_model_dir, small_data_dir) -> Path:
    out = tmp_path_factory.mktemp("run_config") / "run"
    argv = ["run", "--config", str(EXAMPLE), "--base", str(vanilla_model_dir), "--data", str(small_data_dir)]
    assert main([*argv, "--tasks", ",".join(TASKS), "--out", str(out)]) == 0
    return out


def test_the_example_config_is_what_runs(config_run, vanilla_model_dir, small_data_dir):
    shipped = yaml.safe_load(EXAMPLE.read_text())
    record = json.loads((config_run / "run.json").read_text())
    for key in ("method", "stages", "method_args", "batch_size", "device", "eval_every", "eval_window"):
        assert record[key] == shipped[key], key
    assert (record["base"], record["data"]) == (str(vanilla_model_dir), str(small_data_dir))
    assert record["tasks"] == TASKS
    stages = sorted(p.name for p in config_run.glob("stage_*"))
    assert stages == ["stage_1", "stage_2", "stage_3"]
    for k in (1, 2, 3):
        stage = json.loads((config_run / f"stage_{k}" / "stage.json").read_text())
        assert stage["method"] == "npo_diff" and stage["steps"] == shipped["method_args"]["max_steps"]
        assert {key: stage["config"][key] for key in shipped["method_args"]} == shipped["method_args"]


def test_task_one_stays_forgotten(config_run):
    (report,) = json.loads((config_run / "report" / "report.json").read_text())["runs"]
    metrics = report["metrics"]
    task1 = {view: [round(row[0], 2) for row in report["forget"][view]] for view in ("vqa", "qa")}
    FIXTURE_FACTS["run_config (3 npo_diff stages)"] = (
        f"HFP vqa {metrics['hfp_vqa']:.2f} / qa {metrics['hfp_qa']:.2f} (bound {HFP_MIN}), "
        f"FE vqa {metrics['fe_vqa']:.2f} / qa {metrics['fe_qa']:.2f}; task-1 accuracy per stage {task1}"
    )
    for view in ("vqa", "qa"):
        assert metrics[f"hfp_{view}"] >= HFP_MIN, (view, metrics, task1)
