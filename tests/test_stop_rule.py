"""Stop when forgotten (``--until-forgotten``): the rule's arithmetic and settings (fast), and real stages on
the fine-tuned tiny model (slow): a stage stops at the target inside its budget, a tiny budget is recorded as
not met without an error, a training-free stage records what it reached."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from icu_tasks.errors import ConfigError
from icu_unlearn.training.stop_config import ForgettingTarget
from tests.cli_helpers import assert_one_error, run_cli
from tests.fixtures_unlearn import FIXTURE_FACTS

#: GA at the test suite's stage config (tests/test_methods.py): forgets task 1 within ~20 steps of 100.
GA = {"learning_rate": 1e-3, "lr_scheduler": "constant", "max_steps": 100}
TARGET = 0.9
CHECK_EVERY = 5


# ----------------------------------------------------------------------------------------------- arithmetic


def test_forgetting_is_normalised_against_the_base_rate():
    from icu_unlearn.training.stop_rule import ForgettingReference

    ref = ForgettingReference(vanilla_accuracy=0.9, base_rate=0.1, forget_items=32, holdout_items=64)
    assert ref.forgetting(0.9) == pytest.approx(0.0)
    assert ref.forgetting(0.5) == pytest.approx(0.5)  # (0.9 - 0.5) / (0.9 - 0.1)
    assert ref.forgetting(0.1) == pytest.approx(1.0)
    assert ref.forgetting(0.0) == pytest.approx(1.0)  # below the base rate: clipped, not rewarded
    assert ref.forgetting(1.0) == pytest.approx(0.0)  # above the vanilla: clipped
    # a task not known above the base rate (A0 - B0 < 0.1) has no f
    assert math.isnan(ForgettingReference(0.15, 0.1).forgetting(0.0))


@pytest.mark.parametrize(
    ("target", "check_every", "message"),
    [
        (0.0, 5, r"until_forgotten must be in \(0, 1\]"),
        (1.5, 5, r"until_forgotten must be in \(0, 1\]"),
        ("high", 5, "until_forgotten must be a number"),
        (0.9, 0, "check_every must be an integer >= 1"),
    ],
)
def test_target_rejects_bad_values(target, check_every, message):
    with pytest.raises(ConfigError, match=message):
        ForgettingTarget(target, check_every)


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--until-forgotten", "1.5"], "until_forgotten must be in (0, 1]"),
        (["--until-forgotten", "0.9", "--check-every", "0"], "check_every must be an integer >= 1"),
        (["--check-every", "3"], "--check-every needs --until-forgotten"),
    ],
)
def test_unlearn_refuses_a_bad_rule_in_one_line(tmp_path, flags, message):
    out = tmp_path / "run"
    args = ["unlearn", "--method", "ga", "--base", "b", "--data", "d", "--stage", "1", "--out", str(out)]
    assert_one_error(run_cli([*args, *flags], cwd=tmp_path), message)
    assert not out.exists()


def test_run_config_checks_the_rule(tmp_path):
    from icu_unlearn.pipeline.run import RunConfig

    with pytest.raises(ConfigError, match="until_forgotten must be in"):
        RunConfig(base=str(tmp_path), data=str(tmp_path), until_forgotten=2.0)
    with pytest.raises(ConfigError, match="check_every must be"):
        RunConfig(base=str(tmp_path), data=str(tmp_path), check_every=0)
    config = RunConfig(base=str(tmp_path), data=str(tmp_path), until_forgotten=0.9, check_every=3)
    assert config.forgetting_target == ForgettingTarget(0.9, 3)
    assert RunConfig(base=str(tmp_path), data=str(tmp_path)).forgetting_target is None


# ----------------------------------------------------------------------------------------------- real stages


def _stage(vanilla: Path, data: Path, run: Path, method: str, values: dict, target: ForgettingTarget):
    from icu_unlearn.methods import build_method
    from icu_unlearn.training.unlearn import run_stage

    return run_stage(
        build_method(method, **values), vanilla, data, 1, run, device="cpu", until_forgotten=target
    )


def _remeasure(result, vanilla: Path, data: Path) -> float:
    """f of the stage model, measured afresh: A0 and B0 on a freshly loaded vanilla model."""
    from icu_tasks.data.dataset import open_data
    from icu_unlearn.models import load_base
    from icu_unlearn.training.data import Collator
    from icu_unlearn.training.knowledge import accuracy, answer_scores
    from icu_unlearn.training.stop_rule import forgetting_reference, rule_examples

    forget, holdout = rule_examples(open_data(data), 1)
    base, processor = load_base(vanilla, device="cpu")
    reference = forgetting_reference(base, Collator(processor), forget, holdout)
    return reference.forgetting(accuracy(answer_scores(result.model, Collator(processor), forget)))


@pytest.mark.slow
def test_stage_stops_when_forgotten(vanilla_model_dir, small_data_dir, tmp_path):
    result = _stage(
        vanilla_model_dir, small_data_dir, tmp_path / "run", "ga", GA, ForgettingTarget(TARGET, CHECK_EVERY)
    )
    rule = json.loads((result.path / "stage.json").read_text())["stop_rule"]
    FIXTURE_FACTS["stop rule (ga)"] = f"f {rule['value']} after {rule['steps']} of {rule['budget']} steps"
    assert rule["met"] is True and rule["target"] == TARGET and rule["budget"] == GA["max_steps"]
    assert rule["steps"] == result.record["steps"] < GA["max_steps"], rule
    assert rule["steps"] % CHECK_EVERY == 0 or rule["steps"] == 1
    assert rule["value"] >= TARGET and rule["checks"][-1]["forgetting"] == rule["value"]
    # every earlier check was below the target: the stage stopped at the first check that met it
    assert all(c["forgetting"] < TARGET for c in rule["checks"][:-1])
    assert rule["vanilla_accuracy"] - rule["base_rate"] >= 0.1 and rule["forget_items"] > 0
    assert rule["start"]["forgetting"] == pytest.approx(0.0, abs=0.1)
    assert _remeasure(result, vanilla_model_dir, small_data_dir) == pytest.approx(rule["value"], abs=1e-4)


@pytest.mark.slow
def test_exhausted_budget_is_recorded_as_not_met(vanilla_model_dir, small_data_dir, tmp_path):
    budget = {**GA, "max_steps": 2}
    result = _stage(
        vanilla_model_dir,
        small_data_dir,
        tmp_path / "run",
        "ga",
        budget,
        ForgettingTarget(TARGET, CHECK_EVERY),
    )
    rule = json.loads((result.path / "stage.json").read_text())["stop_rule"]
    assert rule["met"] is False and rule["steps"] == 2 == rule["budget"]
    assert rule["value"] < TARGET and [c["step"] for c in rule["checks"]] == [2]


@pytest.mark.slow
def test_training_free_stage_records_what_it_reached(vanilla_model_dir, small_data_dir, tmp_path):
    result = _stage(
        vanilla_model_dir, small_data_dir, tmp_path / "run", "manu", {}, ForgettingTarget(TARGET, CHECK_EVERY)
    )
    rule = result.record["stop_rule"]
    assert rule["steps"] == 0 and rule["budget"] is None and rule["checks"] == []
    assert rule["met"] == (rule["value"] >= TARGET) and "training-free" in rule["note"]
    assert _remeasure(result, vanilla_model_dir, small_data_dir) == pytest.approx(rule["value"], abs=1e-4)
