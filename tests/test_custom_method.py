"""Methods from outside the package: the installable example (``examples/custom_method``, SimNPO) found through
its ``icu_unlearn.methods`` entry point, the ``module:Class`` path form, and a broken plugin refused in one line.

The example is installed for real (``pip install --target``, no network) into a temp dir that the CLI
subprocesses get on ``PYTHONPATH``, so this session's registry is never touched.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import CLI, assert_one_error, cli_env

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "custom_method"


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install`` of a copy of the example (the copy keeps build files out of the checkout)."""
    source = shutil.copytree(EXAMPLE, tmp_path_factory.mktemp("src") / "custom_method")
    target = tmp_path_factory.mktemp("site")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    subprocess.run([*pip, "--target", str(target), str(source)], check=True, capture_output=True, timeout=300)
    assert any(p.name.startswith("icu_custom_method") and p.suffix == ".dist-info" for p in target.iterdir())
    return target


def _cli(args: list[str], cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    env = cli_env(PYTHONPATH=str(pythonpath))
    return subprocess.run([*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.subprocess
def test_installed_plugin_is_listed_with_its_flags(plugin_dir, tmp_path):
    proc = _cli(["methods"], tmp_path, plugin_dir)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("simnpo: "))
    assert (
        "--beta=2.5" in lines[i + 1]
        and "--gamma=0.0" in lines[i + 1]
        and "--retain-weight=1.0" in lines[i + 1]
    )
    assert {line.split(":")[0] for line in lines if not line.startswith(" ")} >= {
        "ga",
        "npo_diff",
        "manu",
        "simnpo",
    }


def test_installed_plugin_runs_one_stage(plugin_dir, tiny_model_dir, small_data_dir, tmp_path):
    run = tmp_path / "run"
    common = [
        "--base",
        str(tiny_model_dir),
        "--data",
        str(small_data_dir),
        "--out",
        str(run),
        "--device",
        "cpu",
    ]
    args = [
        "unlearn",
        "--method",
        "simnpo",
        "--stage",
        "1",
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--beta",
        "3",
    ]
    proc = _cli([*args, *common], tmp_path, plugin_dir)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((run / "stage_1" / "stage.json").read_text())
    assert record["method"] == "simnpo"
    assert record["config"]["beta"] == 3.0 and record["config"]["max_steps"] == 2
    assert (run / "stage_1" / "adapter_model.safetensors").is_file()


@pytest.mark.subprocess
def test_module_class_path_needs_no_install(tmp_path):
    """``--method module:Class`` imports and registers the class: its own flags exist, its checks run."""
    args = ["unlearn", "--method", "icu_custom_method.simnpo:SimNPO", "--stage", "1", "--gamma", "-1"]
    proc = _cli([*args, "--base", "b", "--data", "d", "--out", "o"], tmp_path, EXAMPLE)
    assert_one_error(proc, "gamma must be >= 0")
    proc = _cli(["unlearn", "--method", "no_such_pkg.mod:Thing", "--stage", "1"], tmp_path, EXAMPLE)
    assert_one_error(proc, "method path 'no_such_pkg.mod:Thing' cannot be imported")


@pytest.mark.subprocess
def test_broken_plugin_is_one_error_line(tmp_path):
    """An installed distribution whose entry point does not import: one line naming it, exit 2."""
    dist = tmp_path / "site" / "broken_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[icu_unlearn.methods]\nbroken = no_such_module_xyz:Method\n")
    proc = _cli(["methods"], tmp_path, tmp_path / "site")
    assert proc.returncode == 2
    assert_one_error(proc, "plugin 'broken'", "no_such_module_xyz")


def test_simnpo_loss_by_hand():
    """Uniform logits over 2 tokens: every answer token has log-prob ln 0.5, so with β = 2, γ = 0 the loss is
    (2/2)·softplus(2·ln 0.5) = ln(1 + 0.25); with γ = 0.5 it is softplus(2·ln 0.5 + 0.5) = ln(1 + e^0.5/4)."""
    import torch

    sys.path.insert(0, str(EXAMPLE))
    try:
        from icu_custom_method.simnpo import simnpo_loss
    finally:
        sys.path.remove(str(EXAMPLE))
    logits = torch.zeros(1, 4, 2)
    labels = torch.tensor([[-100, -100, 1, 0]])  # two answer tokens after the shift
    assert simnpo_loss(logits, labels, beta=2.0, gamma=0.0).item() == pytest.approx(math.log(1.25), abs=1e-6)
    expected = math.log(1 + math.exp(0.5) / 4)
    assert simnpo_loss(logits, labels, beta=2.0, gamma=0.5).item() == pytest.approx(expected, abs=1e-6)
