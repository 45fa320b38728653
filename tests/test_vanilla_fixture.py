"""The vanilla fixture is what the method tests assume: trained on this data set, stopped by the rule with
every group at the bar (also when a pytest-xdist worker built it and this test runs in the other one)."""

from __future__ import annotations

import json
from pathlib import Path

from icu_tasks.data.dataset import data_hash
from icu_tasks.records.layout import FINETUNE_JSON
from tests.fixtures_unlearn import FIXTURE_FINETUNE, STOP_AT


def test_vanilla_fixture_stopped_by_the_rule_on_this_data(
    vanilla_model_dir: Path, small_data_dir: Path
) -> None:
    record = json.loads((vanilla_model_dir / FINETUNE_JSON).read_text())
    assert record["data_hash"] == data_hash(small_data_dir)
    stop = record["stopping"]
    assert stop["reached_step"] is not None and stop["reached_step"] <= FIXTURE_FINETUNE["max_steps"]
    groups = stop["final_scores"]
    assert len(groups) == 8, groups  # forget / retain-train / retain-eval / utility × image / text
    assert min(groups.values()) >= STOP_AT, groups
