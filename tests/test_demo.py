"""``icu-bench demo`` end to end at a reduced scale (its hidden scale flags), in-process through ``main()``.

The demo's own phases run as a user runs them — data, tiny model, fine-tune, unlearning stages scored by
lmms-eval, report — on 12 profiles, a fine-tune of a few steps (the stopping rule off), GA stages of 2 steps and
2 docs per task. A second call on the same dir must reuse every finished phase: no file of the data, the
models, the stages or the evaluations is written again, and ``demo.json`` keeps the first call's times.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from icu_unlearn.cli import main
from tests.cli_helpers import snapshot

# the data generator's workers are processes: not a unit-tier test in any case
pytestmark = [pytest.mark.slow, pytest.mark.model, pytest.mark.subprocess]

SMALL = [
    "--profiles", "12", "--tasks", "2", "--profiles-per-task", "2", "--stages", "2", "--method", "ga",
    "--finetune-steps", "3", "--set", "max_steps=2", "--limit", "2",
]  # fmt: skip
PHASES = ["data", "tiny_model", "finetune", "unlearn_and_score", "report"]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> tuple[Path, str]:
    """A finished reduced demo and what its first call printed."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    capture = tmp_path_factory.mktemp("demo_out") / "stdout.txt"
    with open(capture, "w", encoding="utf-8") as fh, contextlib.redirect_stdout(fh):
        status = main(["demo", "--out", str(out), *SMALL])
    assert status == 0, capture.read_text()
    return out, capture.read_text()


def test_demo_runs_every_phase(demo_dir):
    out, printed = demo_dir
    for n in range(1, 6):
        assert f"[{n}/5 " in printed, printed
    finetune = json.loads((out / "vanilla" / "finetune.json").read_text())
    assert finetune["steps"] == 3 and finetune["stopping"] is None
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    assert manifest["scale"] == {"profiles": 12, "tasks": 2, "profiles_per_task": 2}
    run = out / "run_ga"
    assert sorted(p.name for p in run.glob("stage_*")) == ["stage_1", "stage_2"]
    (report,) = json.loads((run / "report" / "report.json").read_text())["runs"]
    assert report["stages"] == 2 and report["scored_stages"] == [0, 1, 2] and report["method"] == "ga"
    headline = {"icu", "ru", "ru_final"} | {f"{m}_{v}" for m in ("fe", "hfp") for v in ("vqa", "qa")}
    assert headline <= set(report["metrics"])
    assert (run / "report" / "report.md").read_text().splitlines()[0] in printed
    record = json.loads((out / "demo.json").read_text())
    assert set(record["phases"]) == set(PHASES) and record["method"] == "ga" and record["stages"] == 2


def test_second_call_reuses_every_finished_phase(demo_dir, capsys):
    out, _ = demo_dir
    parts = [out / "data", out / "tiny", out / "vanilla", *sorted((out / "run_ga").glob("stage_*"))]
    parts += [out / "run_ga" / "eval", out / "demo.json"]
    before = snapshot(*parts)
    assert main(["demo", "--out", str(out), *SMALL]) == 0
    assert snapshot(*parts) == before
    assert "[5/5 " in capsys.readouterr().out
