"""External utility tasks: any lmms-eval task's metric joins RU's utility term, over its own stage-0 value."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from icu_tasks.continual import retention
from icu_tasks.errors import ConfigError
from icu_tasks.records.layout import eval_dir
from icu_tasks.report.external import check_utility_tasks, external_utility, metric_value, parse_utility_task


def test_each_utility_source_is_normalised_by_its_own_stage_zero():
    # R ratio at k=1: 0.4/0.8 = 0.5; utility: built-in 0.5/0.5 = 1.0, external 0.1/0.2 = 0.5 → mean 0.75
    # RU_1 = (0.5 + 0.75) / 2 = 0.625; at k=2: R 0.2/0.8 = 0.25, U 0.25/0.5 = 0.5, E 0.2/0.2 = 1 → mean 0.75
    # → RU_2 = (0.25 + 0.75) / 2 = 0.5
    R, U, E = [0.8, 0.4, 0.2], [0.5, 0.5, 0.25], [0.2, 0.1, 0.2]
    ru = retention.retained_utility_per_stage(R, {"U": U, "mmbench": E})
    assert ru == pytest.approx([1.0, 0.625, 0.5])
    assert retention.retained_utility(R, {"U": U, "mmbench": E}).value == pytest.approx((0.625 + 0.5) / 2)
    # one source alone is the built-in formula
    assert retention.retained_utility_per_stage(R, {"U": U}) == pytest.approx(
        retention.retained_utility_per_stage(R, U)
    )


def test_an_external_task_the_vanilla_hardly_answers_is_left_out_with_a_note():
    R, U, E = [0.8, 0.4], [0.5, 0.5], [0.05, 0.5]
    value = retention.retained_utility_final(R, {"U": U, "pope": E})
    assert value.value == pytest.approx((0.5 + 1.0) / 2)  # E left out: 0.05 < MIN_BASELINE
    assert any(note.startswith("pope[0] = 0.050 < 0.1: pope left out of RU") for note in value.notes)


def test_specs_and_metric_keys():
    assert parse_utility_task("mmbench_en_dev") == ("mmbench_en_dev", None)
    assert parse_utility_task("pope:pope_accuracy") == ("pope", "pope_accuracy")
    for bad in ("", ":acc", "pope:"):
        with pytest.raises(ConfigError, match="TASK or TASK:METRIC"):
            parse_utility_task(bad)
    with pytest.raises(ConfigError, match="named twice"):
        check_utility_tasks(["pope", "pope:acc"], ["icu"])
    with pytest.raises(ConfigError, match="icu_forget_qa is already scored"):
        check_utility_tasks(["icu_forget_qa"], ["icu_forget_qa", "icu_retain_qa"])
    results = {"alias": "pope", "pope_accuracy,none": 0.8, "pope_accuracy_stderr,none": 0.01, "f1,none": 0.7}
    assert metric_value(results, None) == ("pope_accuracy,none", 0.8)
    assert metric_value(results, "f1") == ("f1,none", 0.7)
    assert metric_value(results, "recall") is None


def _results(root: Path, k: int, date: str, results: dict) -> None:
    folder = eval_dir(root, k) / "model_args_dir"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{date}_results.json").write_text(json.dumps({"results": results}))


def test_values_are_read_per_stage_from_the_newest_results_file(tmp_path: Path):
    _results(tmp_path, 0, "20261207_010000", {"mme": {"mme_perception_score,none": 1200.0}})
    _results(tmp_path, 1, "20261207_020000", {"mme": {"mme_perception_score,none": 900.0}})
    _results(tmp_path, 1, "20261207_030000", {"mme": {"mme_perception_score,none": 950.0}})  # a re-score
    _results(tmp_path, 2, "20261207_040000", {"icu_forget_qa": {"exact_match,none": 0.1}})  # mme not scored
    notes: list[str] = []
    out = external_utility(tmp_path, ["mme", "pope"], 2, notes)
    assert list(out) == ["mme"]
    assert out["mme"][:2].tolist() == [1200.0, 950.0] and math.isnan(out["mme"][2])
    assert "utility task pope: no stage's results have it; left out of RU" in notes
    assert "utility task mme: mme_perception_score,none per stage, in RU's utility term" in notes


@pytest.mark.slow
def test_a_run_with_an_utility_task_puts_it_into_ru(vanilla_model_dir: Path, small_data_dir: Path, tmp_path):
    """An ICU task stands in for an external one (``icu_utility_mc``, not among the scored tasks): it is
    scored at every stage, report.json carries it per stage, and RU_k is ½ (R[k]/R[0] + the mean of the built-in
    and the external task's ratios), recomputed here from the report's own per-stage numbers."""
    from icu_unlearn.pipeline.run import RunConfig, run

    config = RunConfig(
        base=str(vanilla_model_dir), data=str(small_data_dir), method="ga", stages=1,
        method_args={"max_steps": 3}, tasks=["icu_retain_qa", "icu_utility"],
        utility_tasks=["icu_utility_mc:mc_accuracy"],
        limit=12, device="cpu",
    )  # fmt: skip
    report = run(config, tmp_path / "run", log=lambda m: None)
    (summary,) = report["runs"]
    ps = summary["per_stage"]
    E = ps["utility:icu_utility_mc"]
    for k in (0, 1):
        results = json.loads(
            next((tmp_path / "run" / "eval" / f"stage_{k}").rglob("*_results.json")).read_text()
        )
        assert E[k] == pytest.approx(results["results"]["icu_utility_mc"]["mc_accuracy,none"])
    R, U = ps["retain"], ps["utility"]
    assert min(R[0], U[0], E[0]) >= 0.1, "the vanilla model must answer every source for this check"
    expected = 0.5 * (R[1] / R[0] + 0.5 * (U[1] / U[0] + E[1] / E[0]))
    assert summary["metrics"]["ru_final"] == pytest.approx(expected)
    assert np.isfinite(expected)
    markdown = (tmp_path / "run" / "report" / "report.md").read_text()
    assert "External utility tasks" in markdown and "icu_utility_mc" in markdown
