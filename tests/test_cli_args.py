"""The ``--set`` / ``--grid`` rule shared by ``icu-bench run`` and ``icu-bench sweep`` (icu_unlearn.cli.args)."""

from __future__ import annotations

import pytest

from icu_tasks.errors import ConfigError
from icu_unlearn.cli.args import key_values, parse_sets


def test_keys_and_values_are_read_one_way():
    sets = parse_sets(["max-steps=25", " beta = 0.5", "weights={abs: 2, freq: 0}", "learning_rate=1e-3"])
    # YAML 1.1 (PyYAML) reads 1e-3 as text; the method config converts it (tests/test_bad_input.py)
    assert sets == {"max_steps": 25, "beta": 0.5, "weights": {"abs": 2, "freq": 0}, "learning_rate": "1e-3"}
    assert key_values("learning_rate=3e-4, 1e-3,,") == ("learning_rate", ["3e-4", "1e-3"])
    assert parse_sets(["beta=0.1", "beta=0.2"]) == {"beta": 0.2}  # the last one wins


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("beta", "--set: expected KEY=VALUE, got 'beta'"),
        ("=1", "--set: expected KEY=VALUE, got '=1'"),
        ("beta=", "--set: expected KEY=VALUE, got 'beta='"),
        ("weights={abs: 2", "cannot read the value '{abs: 2'"),
    ],
)
def test_bad_items_are_one_clear_error(item, message):
    with pytest.raises(ConfigError) as info:
        parse_sets([item])
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_run_and_sweep_refuse_the_same_bad_set(tmp_path, capsys):
    from icu_unlearn.cli import main

    run = ["run", "--out", str(tmp_path / "run"), "--base", "b", "--data", "d", "--set", "beta"]
    sweep = ["sweep", "--method", "ga", "--base", "b", "--data", "d", "--out", str(tmp_path / "sw")]
    sweep += ["--grid", "max_steps=1,2", "--set", "beta"]
    for argv in (run, sweep):
        assert main(argv) == 2
        assert capsys.readouterr().err.strip() == "error: --set: expected KEY=VALUE, got 'beta'"
    assert not (tmp_path / "run").exists() and not (tmp_path / "sw").exists()
