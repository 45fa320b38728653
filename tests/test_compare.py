"""``icu-bench compare`` end to end at a toy scale (slow): 2 methods × 2 seeds × 2 stages, tiny data, ``--limit``.

The toy vanilla models are fine-tuned for a few steps only, so they know little and most forgetting metrics
are undefined (n/a) here; what is checked is the machinery: each seed has its own people, the stop rule is
recorded at every stage, the aggregate and leaderboard are written, a second call skips every finished step,
another protocol is refused, and a user's run is added to the leaderboard (or refused) by
``icu-bench report --leaderboard``. The toy comparison, the refused protocol, the user's runs and the reports
run in-process through ``main()``; the second ``compare`` call (which skips every finished step) is a real
``icu-bench`` process. The arithmetic of the aggregate is tested by hand in
tests/test_seeds.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cli_helpers import assert_one_error, call_cli, edit_json, run_cli

BUDGET = 4
TOY = [
    "--seeds", "0,1", "--methods", "ga,manu", "--stages", "2", "--profiles", "12", "--image-size", "96",
    "--tasks", "icu", "--limit", "4", "--max-steps", str(BUDGET), "--check-every", "2",
    "--finetune-set", "max_steps=5", "--finetune-set", "stop_at_accuracy=0", "--finetune-set", "warmup_steps=0",
    "--finetune-set", "longform=false", "--finetune-set", "batch_size=16",
]  # fmt: skip
#: A user's run under the toy protocol (seed 0's data and vanilla model).
USER = ["--stages", "2", "--tasks", "icu", "--limit", "4", "--until-forgotten", "0.9", "--check-every", "2"]


def test_cli_defaults_are_the_config_defaults(tmp_path):
    """The parser's defaults (written without importing the pipeline) are CompareConfig's."""
    import dataclasses

    from icu_unlearn.cli import build_parser
    from icu_unlearn.pipeline.compare import CompareConfig

    args = build_parser().parse_args(["compare", "--out", str(tmp_path)])
    defaults = {f.name: f.default for f in dataclasses.fields(CompareConfig)}
    config = CompareConfig()
    assert [int(s) for s in args.seeds.split(",")] == config.seeds and args.tasks.split(",") == config.tasks
    for name in ("stages", "profiles", "profiles_per_task", "image_size", "until_forgotten", "check_every",
                 "max_steps", "eval_every", "eval_window", "limit", "batch_size", "device"):  # fmt: skip
        assert getattr(args, name) == defaults[name], name


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("compare")
    proc = call_cli(["compare", "--out", "out", *TOY], work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work


def _stage(run: Path, k: int) -> dict:
    return json.loads((run / f"stage_{k}" / "stage.json").read_text())


@pytest.mark.slow
@pytest.mark.subprocess
def test_each_seed_is_its_own_repetition(toy):
    out = toy / "out"
    manifests = [json.loads((out / f"seed_{s}" / "data" / "manifest.json").read_text()) for s in (0, 1)]
    assert manifests[0]["data_hash"] != manifests[1]["data_hash"] and [m["seed"] for m in manifests] == [0, 1]
    vanilla = [json.loads((out / f"seed_{s}" / "vanilla" / "finetune.json").read_text()) for s in (0, 1)]
    assert [v["config"]["seed"] for v in vanilla] == [0, 1]
    for seed in (0, 1):
        assert _stage(out / f"seed_{seed}" / "run_ga", 1)["seed"] == seed


@pytest.mark.slow
@pytest.mark.subprocess
def test_stop_rule_recorded_and_reported(toy):
    run = toy / "out" / "seed_0" / "run_ga"
    for k in (1, 2):
        rule = _stage(run, k)["stop_rule"]
        assert rule["target"] == 0.9 and rule["budget"] == BUDGET and rule["steps"] <= BUDGET
        assert rule["met"] == (rule["value"] is not None and rule["value"] >= 0.9)
    manu = _stage(toy / "out" / "seed_0" / "run_manu", 2)["stop_rule"]
    assert manu["steps"] == 0 and "training-free" in manu["note"]
    report = (run / "report" / "report.md").read_text()
    assert "Steps per stage:" in report and "| k | steps | budget |" in report


@pytest.mark.slow
@pytest.mark.subprocess
def test_aggregate_and_leaderboard(toy):
    out = toy / "out"
    board = json.loads((out / "leaderboard.json").read_text())
    assert board["format"] == "icu-bench-leaderboard" and board["protocol"]["stages"] == 2
    assert sorted(board["protocol"]["data"]["seeds"]) == ["0", "1"]
    assert [(e["method"], e["seed"]) for e in board["entries"]] == [
        ("ga", 0),
        ("ga", 1),
        ("manu", 0),
        ("manu", 1),
    ]
    steps = {e["method"]: e["metrics"]["steps_total"] for e in board["entries"]}
    assert steps["manu"] == 0 and 0 < steps["ga"] <= 2 * BUDGET
    agg = json.loads((out / "comparison.json").read_text())
    assert agg == board["aggregate"] and agg["seeds"] == [0, 1]
    ranking = {r["method"]: r for r in agg["ranking"]["steps_total"]}
    assert ranking["manu"]["rank"] == 1  # fewer steps on both seeds
    assert "## Ranking by ICU" in (out / "comparison.md").read_text()
    assert "## Protocol" in (out / "leaderboard.md").read_text()


@pytest.mark.slow
@pytest.mark.subprocess
def test_second_call_skips_every_finished_step(toy):
    out = toy / "out"
    before = {p: p.stat().st_mtime_ns for p in out.glob("seed_*/run_*/stage_*/stage.json")}
    proc = run_cli(["compare", "--out", "out", *TOY], cwd=toy, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("complete, skipped") == 4 and "finetune done" not in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in before} == before


@pytest.mark.slow
@pytest.mark.subprocess
def test_another_protocol_is_refused(toy):
    record = (toy / "out" / "compare.json").read_bytes()
    proc = call_cli(["compare", "--out", "out", *TOY, "--until-forgotten", "0.5"], toy)
    assert_one_error(proc, "another protocol", "stop_rule")
    assert (toy / "out" / "compare.json").read_bytes() == record


@pytest.mark.slow
@pytest.mark.subprocess
def test_user_runs_join_the_leaderboard_or_are_refused(toy):
    seed0 = toy / "out" / "seed_0"
    board = toy / "out" / "leaderboard.json"
    common = ["--base", str(seed0 / "vanilla"), "--data", str(seed0 / "data")]
    user = ["run", *common, "--method", "npo", *USER, "--set", f"max_steps={BUDGET}", "--out", "user_npo"]
    assert call_cli(user, toy).returncode == 0
    proc = call_cli(["report", "--leaderboard", board, "user_npo"], toy)
    assert proc.returncode == 0, proc.stderr[-3000:]
    entries = json.loads(board.read_text())["entries"]
    added = [e for e in entries if e["source"] == "user"]
    assert [(e["method"], e["seed"]) for e in added] == [("npo", 0)] and len(entries) == 5
    assert "npo" in (toy / "out" / "leaderboard.md").read_text()
    saved = board.read_bytes()
    assert_one_error(call_cli(["report", "--leaderboard", board, "user_npo"], toy), "already has")
    other = ["run", *common, "--method", "manu", *USER[2:], "--stages", "1", "--out", "user_manu"]
    assert call_cli(other, toy).returncode == 0
    proc = call_cli(["report", "--leaderboard", board, "user_manu"], toy)
    assert_one_error(proc, "another protocol", "stages 1 (protocol: 2)")
    # the same run on a vanilla model fine-tuned with another batch size than the protocol's recipe
    other_vanilla, other_run = toy / "vanilla_batch_32", toy / "user_other_vanilla"
    shutil.copytree(seed0 / "vanilla", other_vanilla)
    shutil.copytree(toy / "user_npo", other_run)
    edit_json(other_vanilla / "finetune.json", lambda r: r["config"].update(batch_size=32))
    edit_json(other_run / "run.json", lambda r: r.update(base=str(other_vanilla)))
    proc = call_cli(["report", "--leaderboard", board, other_run], toy)
    assert_one_error(proc, "another protocol", "vanilla fine-tune batch_size 32 (protocol: 16)")
    assert board.read_bytes() == saved
