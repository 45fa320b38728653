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


def test_configs_convert_yaml_text_values(tmp_path):
    """PyYAML (YAML 1.1) reads ``1e2`` and ``9e-1`` as text: every config converts a value by its field's type
    (``X | None`` fields too, None kept) or refuses it naming the field."""
    import yaml

    from icu_unlearn.pipeline.compare import CompareConfig
    from icu_unlearn.pipeline.relearn import RelearnConfig
    from icu_unlearn.pipeline.run import RunConfig

    raw = yaml.safe_load("data: d\nlimit: 1e2\nuntil_forgotten: 9e-1\nstages: '2'\neval_window:\n")
    assert (raw["limit"], raw["until_forgotten"]) == ("1e2", "9e-1")
    run = RunConfig.from_dict(raw | {"base": tmp_path / "b"})
    assert (run.limit, run.until_forgotten, run.stages, run.eval_window) == (100, 0.9, 2, None)
    assert run.base == str((tmp_path / "b").resolve())  # a path object is a str field's value too
    assert CompareConfig(until_forgotten="9e-1").until_forgotten == 0.9
    assert RelearnConfig(learning_rate="1e-4").learning_rate == 1e-4
    for bad, message in (({"limit": "1.5"}, "limit must be an int, got '1.5'"),
                         ({"until_forgotten": "most"}, "until_forgotten must be a float, got 'most'")):  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            RunConfig(base="b", data="d", **bad)
