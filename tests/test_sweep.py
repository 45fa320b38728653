"""``icu-bench sweep``: the selection rule on hand-made rows, and a 2 x 1 grid on the untrained tiny model
(the plumbing: one stage per point, the table files, resuming, a changed spec refused)."""

from __future__ import annotations

import json

import pytest

from icu_tasks.errors import ConfigError
from icu_unlearn.pipeline.sweep import grid_points, point_id, select


def _row(lr, steps, f_vqa, f_qa, retain_ratio):
    return {
        "learning_rate": lr,
        "max_steps": steps,
        "f_vqa": f_vqa,
        "f_qa": f_qa,
        "retain_ratio": retain_ratio,
    }


def test_rule_picks_the_smallest_budget_that_meets_it():
    rows = [
        _row(1e-3, 50, 1.0, 1.0, 0.95),
        _row(1e-3, 25, 0.95, 0.92, 0.91),  # meets the rule with the fewest steps
        _row(3e-4, 25, 0.85, 1.0, 0.99),  # forgets too little on VQA
        _row(1e-2, 10, 1.0, 1.0, 0.80),  # loses too much retain-eval
    ]
    assert select(rows, {})["pick"] == 1 and select(rows, {})["rule_met"] is True


def test_rule_falls_back_to_the_best_trade_off():
    rows = [_row(1e-3, 25, 0.5, 0.8, 1.0), _row(1e-3, 50, 0.9, 0.7, 0.8), _row(1e-2, 50, None, 1.0, 1.0)]
    # min(f) x min(1, retain): 0.5 x 1.0 = 0.5; 0.7 x 0.8 = 0.56; an undefined view counts as 0
    assert select(rows, {}) == {"pick": 1, "rule_met": False, "rule": select(rows, {})["rule"]}


def test_grid_points_and_ids():
    points = grid_points({"learning_rate": [3e-4, 1e-3], "max_steps": [25, 50]})
    assert points[1] == {"learning_rate": 3e-4, "max_steps": 50} and len(points) == 4
    assert point_id(3, points[3]) == "p03-learning_rate=0.001,max_steps=50"


def test_sweep_on_the_tiny_model_and_resume(tiny_model_dir, small_data_dir, tmp_path, monkeypatch, capsys):
    from icu_unlearn.cli import main

    out = tmp_path / "sweep"
    argv = ["sweep", "--method", "ga", "--base", str(tiny_model_dir), "--data", str(small_data_dir)]
    argv += ["--out", str(out), "--grid", "learning_rate=1e-3,1e-2", "max_steps=2", "--set", "batch_size=4"]
    assert main([*argv, "--device", "cpu"]) == 0
    assert "pick:" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert [(r["learning_rate"], r["max_steps"], r["steps"]) for r in results["rows"]] == [
        (1e-3, 2, 2),
        (1e-2, 2, 2),
    ]
    # holdout: the base rate of the normalised forgetting (the data has a holdout split)
    assert set(results["vanilla"]) == {"forget_vqa", "forget_qa", "retain", "holdout_vqa", "holdout_qa"}
    for name in ("sweep.md", "sweep.csv", "sweep.json", "vanilla.json"):
        assert (out / name).is_file()
    assert len(list((out / "points").glob("*/stage_1/stage.json"))) == 2
    csv_lines = (out / "sweep.csv").read_text().splitlines()
    assert len(csv_lines) == 3 and sum(line.startswith("1,") for line in csv_lines[1:]) == 1

    import icu_unlearn.training.unlearn

    def no_training(*args, **kwargs):
        raise AssertionError("a finished point was run again")

    monkeypatch.setattr(icu_unlearn.training.unlearn, "run_stage", no_training)
    assert main([*argv, "--device", "cpu"]) == 0  # resumes: every point has its result
    assert json.loads((out / "results.json").read_text())["rows"] == results["rows"]
    changed = [a if a != "max_steps=2" else "max_steps=3" for a in argv]
    assert main([*changed, "--device", "cpu"]) == 2
    assert "holds a sweep with other settings (grid)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("grid", "message"),
    [(["learning_rate"], "expected KEY=V1,V2"), (["learning_rat=1e-3"], "did you mean 'learning_rate'")],
)
def test_bad_grid_is_one_clear_error(grid, message, tmp_path, capsys):
    from icu_unlearn.cli import main

    argv = ["sweep", "--method", "ga", "--base", "b", "--data", "d", "--out", str(tmp_path), "--grid", *grid]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    with pytest.raises(ConfigError):
        from icu_unlearn.pipeline.sweep import sweep

        sweep("ga", "b", "d", tmp_path, {})
