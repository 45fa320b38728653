"""The leaderboard file (fast): format and version checks, protocol differences, markdown.

Adding real runs to a leaderboard (and refusing one made under another protocol) is tested end to end in
tests/test_compare.py.
"""

from __future__ import annotations

import json

import pytest

from icu_tasks.errors import ConfigError
from icu_tasks.report.headline import HEADLINE
from icu_tasks.report.leaderboard import (
    FORMAT_VERSION,
    build_leaderboard,
    protocol_difference,
    read_leaderboard,
    write_leaderboard,
)

PROTOCOL = {
    "data": {
        "profiles": 40,
        "tasks": 8,
        "profiles_per_task": 2,
        "image_size": 160,
        "seeds": {"0": "ab" * 32},
    },
    "stages": 8,
    "schedule": {"eval_every": 1, "eval_window": None},
    "stop_rule": {"until_forgotten": 0.9, "check_every": 5, "budget": 300},
    "tasks": ["icu"],
    "limit": None,
    "finetune": {"stop_at_accuracy": 0.9},
    "metrics": list(HEADLINE),
    "versions": {"torch": "2.13.0"},
}


def _entry(method: str, seed: int, icu: float) -> dict:
    return {"method": method, "seed": seed, "name": f"{method}_{seed}", "run": f"seed_{seed}/run_{method}",
            "source": "icu-bench compare", "metrics": {k: None for k in HEADLINE} | {"icu": icu}}  # fmt: skip


def test_protocol_difference_names_the_keys_and_ignores_seed_hashes():
    other = json.loads(json.dumps(PROTOCOL))
    other["data"]["seeds"] = {"0": "cd" * 32, "1": "ef" * 32}
    other["metrics"] = ["icu"]  # the metric set decides only the aggregation
    assert protocol_difference(PROTOCOL, other) == []
    other["stages"], other["stop_rule"]["until_forgotten"] = 4, 0.8
    other["data"]["profiles"] = 48
    assert protocol_difference(PROTOCOL, other) == ["data", "stages", "stop_rule"]


def test_written_leaderboard_reads_back_with_its_markdown(tmp_path):
    entries = [_entry("ga", s, v) for s, v in ((0, 0.5), (1, 0.6))] + [_entry("npo", 0, 0.4)]
    path = write_leaderboard(build_leaderboard(PROTOCOL, entries), tmp_path / "leaderboard.json")
    board = read_leaderboard(path)
    assert board["format_version"] == FORMAT_VERSION and board["protocol"] == PROTOCOL
    assert [(e["method"], e["seed"]) for e in board["entries"]] == [("ga", 0), ("ga", 1), ("npo", 0)]
    ga = board["aggregate"]["summary"]["ga"]["icu"]
    assert ga["mean"] == pytest.approx(0.55) and ga["n"] == 2
    md = (tmp_path / "leaderboard.md").read_text()
    assert "until normalised forgetting ≥ 0.9" in md and "| npo | 0 | `seed_0/run_npo` |" in md
    assert md.count("\n# ") + md.startswith("# ") == 1 and "\n## Comparison over seeds" in md
    # npo has one seed: no paired interval with ga, so the two are tied
    ranking = {r["method"]: r for r in board["aggregate"]["ranking"]["icu"]}
    assert ranking["npo"]["tied_with"] == ["ga"] and ranking["ga"]["rank"] == 1


def test_an_empty_leaderboard_renders(tmp_path):
    path = write_leaderboard(build_leaderboard(PROTOCOL, []), tmp_path / "lb.json")
    assert read_leaderboard(path)["aggregate"] is None
    assert "## Runs" in (tmp_path / "lb.md").read_text()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "cannot read leaderboard"),
        ('{"runs": []}', "is not an ICU-Bench leaderboard file"),
        ('{"format": "icu-bench-leaderboard", "format_version": 99}', "reads leaderboards up to version"),
    ],
)
def test_bad_leaderboard_files_are_refused(tmp_path, content, message):
    path = tmp_path / "lb.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        read_leaderboard(path)
    with pytest.raises(ConfigError, match="cannot read leaderboard"):
        read_leaderboard(tmp_path / "missing.json")
