"""``examples/compare_methods.sh`` at a smoke scale: 2 methods × 2 stages on the session's data and vanilla model.

The script skips every step whose output is complete, so the session's small data set, tiny model and vanilla
model are linked in as ``OUT/data``, ``OUT/tiny`` and ``OUT/vanilla`` (the script must leave them untouched);
what runs is its own part: one ``icu-bench run`` per method (``RUN_ARGS``: 4 docs per task, 3 steps per
stage), the report over both runs and ``COMMAND.md``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import snapshot
from tests.subprocess_env import subprocess_env

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "compare_methods.sh"
METHODS = ("ga", "npo")
STAGES = 2
RUN_ARGS = "--limit 4 --set max_steps=3"


def test_compare_methods_script_runs_every_method_and_reports(
    tmp_path: Path, small_data_dir: Path, tiny_model_dir: Path, vanilla_model_dir: Path
) -> None:
    out = tmp_path / "cmp"
    out.mkdir()
    linked = {"data": small_data_dir, "tiny": tiny_model_dir, "vanilla": vanilla_model_dir}
    for name, target in linked.items():
        (out / name).symlink_to(target, target_is_directory=True)
    before = snapshot(*linked.values())
    env = subprocess_env(
        tmp_path,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        METHODS=" ".join(METHODS),
        EVAL="icu",
        RUN_ARGS=RUN_ARGS,
    )
    proc = subprocess.run(
        ["bash", str(SCRIPT), str(out), str(STAGES)], env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert snapshot(*linked.values()) == before  # complete inputs are skipped, never regenerated

    for method in METHODS:
        run = out / f"run_{method}"
        for k in range(1, STAGES + 1):
            stage = json.loads((run / f"stage_{k}" / "stage.json").read_text())
            assert (stage["method"], stage["stage"]) == (method, k)
        for k in range(STAGES + 1):
            assert list((run / "eval" / f"stage_{k}").rglob("*_results.json")), (method, k)
        record = json.loads((run / "run.json").read_text())
        assert (record["limit"], record["method_args"], record["stages"]) == (4, {"max_steps": 3}, STAGES)
    report = json.loads((out / "report" / "report.json").read_text())
    assert [r["method"] for r in report["runs"]] == list(METHODS)
    assert (out / "report" / "report.md").is_file()
    command = (out / "report" / "COMMAND.md").read_text()
    data_hash = json.loads((small_data_dir / "manifest.json").read_text())["data_hash"]
    assert f'METHODS="{" ".join(METHODS)}"' in command and f'RUN_ARGS="{RUN_ARGS}"' in command
    assert data_hash in command and f"OUT {STAGES}" in command
