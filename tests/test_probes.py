"""Robustness probes without a model: the exposed/unexposed split, the recovery maths, the CLI's bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from icu_tasks.continual import robustness as rb
from icu_tasks.errors import ConfigError, DataError
from icu_unlearn.pipeline.relearn import RelearnConfig, attack_rows, profile_split, split_profiles
from tests.cli_helpers import assert_one_error, call_cli, snapshot


def test_split_is_disjoint_deterministic_and_half() -> None:
    ids = [f"med-{i:04d}" for i in range(7)]
    exposed, unexposed = split_profiles(ids, seed=0, key=1)
    assert set(exposed).isdisjoint(unexposed) and sorted(exposed + unexposed) == ids
    assert len(exposed) == 3 and len(unexposed) == 4  # n // 2 exposed
    assert split_profiles(list(reversed(ids)), seed=0, key=1) == (exposed, unexposed)  # order-free
    others = {tuple(split_profiles(ids, seed=s, key=1)[0]) for s in range(8)}
    assert len(others) > 1  # the seed decides the halves


def test_split_of_one_profile_is_refused() -> None:
    with pytest.raises(DataError, match="cannot split 1 profile"):
        split_profiles(["med-0001"], seed=0, key=1)


def test_split_of_the_small_data(small_data_dir: Path) -> None:
    from icu_tasks.data.dataset import open_data

    data = open_data(small_data_dir)
    split = profile_split(data, [1, 2], seed=0)
    assert split == profile_split(data, [1, 2], seed=0)
    for task in (1, 2):
        people = {r["profile_id"] for r in data.forget(task)}
        halves = split[str(task)]
        assert len(halves["exposed"]) == len(people) // 2
        assert set(halves["exposed"]) | set(halves["unexposed"]) == people
        assert set(halves["exposed"]).isdisjoint(halves["unexposed"])
    rows = attack_rows(data, "relearn", split)
    exposed = {p for h in split.values() for p in h["exposed"]}
    assert rows and {r["profile_id"] for r in rows} == exposed
    assert {r["view"] for r in rows} == {"vqa", "qa"}
    holdout = profile_split(data, None, seed=0)["holdout"]
    scratch = attack_rows(data, "scratch", {"holdout": holdout})
    assert {r["profile_id"] for r in scratch} == set(holdout["exposed"])
    assert {r["split"] for r in attack_rows(data, "benign", split)} == {"retain_train"}


def test_recovery_by_hand() -> None:
    # vanilla knew 0.9, the stage brought it to 0.1: the probe at 0.5 undid half of the 0.8 forgotten
    assert rb.recovery(0.9, 0.1, 0.5) == pytest.approx(0.5)
    # quantizing the vanilla itself costs 0.1 (0.9 -> 0.8): 0.5 brings back 0.4 of the 0.7 the quantized
    # vanilla has over the stage
    assert rb.recovery(0.9, 0.1, 0.5, ref=0.8) == pytest.approx(0.4 / 0.7)
    assert rb.recovery(0.9, 0.0, 0.0, ref=0.85) == 0.0  # quantization noise on the vanilla is no recovery
    assert rb.recovery(0.9, 0.1, 0.05) == 0.0 and rb.recovery(0.9, 0.1, 1.0) == 1.0  # clipped
    assert rb.recovery(0.9, 0.85, 0.9) is None  # forgot 0.05 < MIN_FORGETTING: nothing to recover


def test_stage_that_forgot_nothing_has_no_recovery_and_says_why() -> None:
    a0 = np.array([1.0, 0.8, 0.9, 1.0])
    est = rb.recovery_estimate(a0, a0.copy(), a0.copy())
    assert est.value is None and est.low is None and "forgot less than" in est.note
    assert est.as_dict()["note"] == est.note


def test_paired_interval_holds_the_point_and_is_seeded() -> None:
    rng = np.random.default_rng(3)
    a0 = np.ones(12)
    ak = rng.uniform(0.0, 0.3, 12)
    probe = np.clip(ak + rng.uniform(0.1, 0.6, 12), 0, 1)
    est = rb.recovery_estimate(a0, ak, probe, n_boot=300, seed=1)
    assert est.low <= est.value <= est.high and est.extra["profiles"] == 12
    assert rb.recovery_estimate(a0, ak, probe, n_boot=300, seed=1) == est
    point = (probe.mean() - ak.mean()) / (1 - ak.mean())
    assert est.value == pytest.approx(point)


def test_control_gain_and_share_by_hand() -> None:
    before, after = np.array([0.0, 0.25, 0.0, 0.25]), np.array([0.25, 0.5, 0.0, 0.25])
    est = rb.control_estimate(before, after, margin=0.5, n_boot=200)
    assert est.value == pytest.approx(0.125) and est.extra["share"] == pytest.approx(0.25)
    assert rb.control_estimate(before, after, margin=0.05, n_boot=50).extra["share"] is None


def test_relearn_minus_benign_by_hand_and_paired() -> None:
    # vanilla 1.0, stage 0.0 on four people; relearning brings back 0.5 on average, benign 0.25
    a0, ak = np.ones(4), np.zeros(4)
    relearn, benign = np.array([0.5, 0.75, 0.25, 0.5]), np.array([0.25, 0.5, 0.0, 0.25])
    est = rb.recovery_difference_estimate(a0, ak, relearn, benign, n_boot=300, seed=0)
    assert est.value == pytest.approx(0.25)
    # every person gains exactly 0.25 more from relearning: a paired resample cannot move the difference
    assert est.low == pytest.approx(0.25) and est.high == pytest.approx(0.25)
    # the same recoveries unpaired (benign shuffled across people) would give a wide interval; paired it is 0
    same = rb.recovery_difference_estimate(a0, ak, relearn, relearn.copy(), n_boot=300, seed=0)
    assert (same.value, same.low, same.high) == (0.0, 0.0, 0.0)
    nothing = rb.recovery_difference_estimate(a0, a0.copy(), relearn, benign, n_boot=50)
    assert nothing.value is None and "forgot less than" in nothing.note


def test_paired_arrays_must_have_one_length() -> None:
    with pytest.raises(ValueError, match="one length"):
        rb.paired_bootstrap({"a": np.ones(3), "b": np.ones(4)}, lambda m: 0.0)


@pytest.mark.parametrize("value", [{"steps": 0}, {"batch_size": 0}, {"learning_rate": -1.0}])
def test_bad_attack_config(value: dict) -> None:
    with pytest.raises(ConfigError):
        RelearnConfig(**value)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["attack", "relearn", "{tmp}/nope", "--stage", "1"], "not a run dir"),
        (["attack", "probe", "{tmp}/nope", "--stage", "1"], "not a run dir"),
        (["attack", "relearn", "{run}", "--stage", "0"], "must be >= 1"),
        (["attack", "relearn", "{run}", "--stage", "2"], "not complete"),
        (["attack", "relearn", "{run}", "--stage", "1", "--steps", "0"], "steps must be >= 1"),
        (["attack", "probe", "{run}", "--stage", "1", "--quantize", "int3"], "unknown quantization 'int3'"),
        (["attack", "table", "{run}"], "no scored probes"),
        (["attack", "relearn", "{run}", "--kind", "scratch", "--stage", "1"], "leave out --stage"),
        (["attack", "relearn", "{run}", "--kind", "benign"], "--stage K is required"),
    ],
)
def test_attack_bad_input_is_one_error_line(tmp_path: Path, args: list[str], needle: str) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text('{"base": "/nowhere", "data": "/nowhere", "stages": 2}', encoding="utf-8")
    before = snapshot(tmp_path)
    proc = call_cli([a.format(tmp=tmp_path, run=run) for a in args], tmp_path)
    assert_one_error(proc, needle)
    assert snapshot(tmp_path) == before  # nothing written
