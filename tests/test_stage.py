"""The shared unlearning loop's guards and refusals, the CLI, MANU's cap, and data-parallel equivalence.

These run on the *untrained* tiny model (no fine-tune needed): they check what the loop refuses or records,
not how well a method unlearns (that is ``tests/test_methods.py``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from icu_tasks.errors import ConfigError, StageError
from icu_unlearn.methods import get_method
from tests.subprocess_env import subprocess_env


class _Frozen(get_method("ga")):
    """GA whose adapter is frozen before training (a silent no-op in other toolkits)."""

    def prepare(self, model, data):
        for p in model.parameters():
            p.requires_grad_(False)


class _NoGradient(get_method("ga")):
    """GA whose loss carries no gradient to the adapter: the weights cannot move."""

    def compute_loss(self, model, batch, ctx):
        return super().compute_loss(model, batch, ctx) * 0.0


def _run(method, base, data, stage, run, **kw):
    from icu_unlearn.training.unlearn import run_stage

    return run_stage(method, base, data, stage, run, device="cpu", **kw)


def _short(cls=None, **values):
    cls = cls or get_method("ga")
    return cls(cls.config_class(max_steps=2, batch_size=4, **values))


def test_guard_fires_on_a_frozen_adapter(tiny_model_dir, small_data_dir, tmp_path):

    with pytest.raises(StageError, match="no trainable parameters"):
        _run(_short(_Frozen), tiny_model_dir, small_data_dir, 1, tmp_path)
    assert not (tmp_path / "stage_1").exists()


def test_guard_fires_when_weights_do_not_change(tiny_model_dir, small_data_dir, tmp_path):

    with pytest.raises(StageError, match="did not change"):
        _run(_short(_NoGradient), tiny_model_dir, small_data_dir, 1, tmp_path)
    assert not (tmp_path / "stage_1").exists() and not list(tmp_path.glob(".tmp-*"))


def test_lora_targets_matching_nothing_fail(tiny_model_dir, small_data_dir, tmp_path):
    with pytest.raises(ConfigError, match="matched no module"):
        _run(_short(lora_target_modules=r".*nothing_here$"), tiny_model_dir, small_data_dir, 1, tmp_path)


def test_stage_dirs_are_never_overwritten_silently(tiny_model_dir, small_data_dir, tmp_path):

    first = _run(_short(), tiny_model_dir, small_data_dir, 1, tmp_path)
    before = (first.path / "adapter_model.safetensors").read_bytes()
    with pytest.raises(StageError, match="--overwrite"):
        _run(_short(seed=1), tiny_model_dir, small_data_dir, 1, tmp_path)
    assert (first.path / "adapter_model.safetensors").read_bytes() == before
    _run(_short(seed=1), tiny_model_dir, small_data_dir, 1, tmp_path, overwrite=True)
    assert (first.path / "adapter_model.safetensors").read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage_1"]


def test_stage_k_needs_a_matching_parent(tiny_model_dir, small_data_dir, tmp_path):

    with pytest.raises(StageError, match="stage dir not found"):
        _run(_short(), tiny_model_dir, small_data_dir, 2, tmp_path)
    stage1 = _run(_short(), tiny_model_dir, small_data_dir, 1, tmp_path).path
    with pytest.raises(StageError, match="must start from stage 2"):
        _run(_short(), tiny_model_dir, small_data_dir, 3, tmp_path, parent=stage1)
    with pytest.raises(ConfigError, match="stage 1 starts from the vanilla model"):
        _run(_short(), tiny_model_dir, small_data_dir, 1, tmp_path / "other", parent=stage1)


def test_unknown_forget_task_is_a_data_error(small_data_dir):
    from icu_tasks.data.dataset import open_data
    from icu_tasks.errors import DataError
    from icu_unlearn.training.data import stage_data

    with pytest.raises(DataError, match=r"forget task\(s\) \[9\] not in data dir"):
        stage_data(open_data(small_data_dir), [9], processor=None)


def test_cli_unlearn(tiny_model_dir, small_data_dir, tmp_path, capsys):
    import json

    from icu_unlearn.cli import main

    common = ["--base", str(tiny_model_dir), "--data", str(small_data_dir), "--out", str(tmp_path)]
    assert main(["unlearn", "--method", "npo_dif", "--stage", "1", *common]) == 2
    assert "did you mean 'npo_diff'" in capsys.readouterr().err
    assert main(["unlearn", "--method", "ga", "--stage", "1", "--beta", "0.3", *common]) == 2
    assert "--beta does not apply to method 'ga'" in capsys.readouterr().err
    assert main(["unlearn", "--method", "npo", "--stage", "1", "--beta", "-1", *common]) == 2
    assert capsys.readouterr().err.strip() == "error: beta must be > 0, got -1.0"
    assert not (tmp_path / "stage_1").exists()
    argv = [
        "unlearn",
        "--method",
        "NPO",
        "--stage",
        "1",
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--beta",
        "0.7",
    ]
    assert main([*argv, "--device", "cpu", *common]) == 0
    record = json.loads((tmp_path / "stage_1" / "stage.json").read_text())
    assert (
        record["method"] == "npo" and record["config"]["beta"] == 0.7 and record["config"]["max_steps"] == 2
    )


def test_manu_cap_is_reached_without_failing_the_run(tiny_model_dir, small_data_dir, tmp_path):
    import json

    from icu_unlearn.models import read_masks

    manu = get_method("manu")
    cfg = {"prune_fraction": 0.05, "max_total_fraction": 0.05, "calib_batch_size": 8}
    s1 = _run(manu(manu.config_class(**cfg)), tiny_model_dir, small_data_dir, 1, tmp_path)
    s2 = _run(manu(manu.config_class(**cfg)), tiny_model_dir, small_data_dir, 2, tmp_path)
    r2 = json.loads((s2.path / "stage.json").read_text())
    assert r2["method_info"]["cap_reached"] is True and r2["masks"]["pruned_new"] == 0
    m1, m2 = read_masks(s1.path), read_masks(s2.path)
    assert m1.keys() == m2.keys() and all(bool((m1[k] == m2[k]).all()) for k in m1)


@pytest.mark.slow
def test_accelerate_two_processes_match_one(tiny_model_dir, small_data_dir, tmp_path):
    """``accelerate launch --multi_gpu --num_processes 2`` on CPU (DDP over gloo) gives the same adapter as one
    process: same global batch and data order, token-mean loss over the global batch. Tolerance 1e-4 relative:
    measured 4e-6 (float summation order); a per-process loss mean instead of the global one gives ~0.2.

    No port is picked in advance (a free port found here could be taken by another process before the launch
    binds it): ``PET_STANDALONE=1`` is torchrun's ``--standalone``, which ``accelerate launch`` passes on (it
    builds torchrun's arguments from torchrun's own parser, whose flags default to ``PET_<NAME>``). Standalone
    runs the c10d rendezvous on ``localhost:0``: the agent's TCP store binds a port the OS picks, and the two
    workers get that port and share the store, so nothing can race for it."""
    import torch
    from safetensors.torch import load_file

    from icu_unlearn.cli import main

    argv = ["unlearn", "--method", "ga_diff", "--base", str(tiny_model_dir), "--data", str(small_data_dir)]
    argv += ["--stage", "1", "--steps", "3", "--batch-size", "8", "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0
    launcher = Path(sys.executable).parent / "accelerate-launch"
    cmd = [
        str(launcher),
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
    ]
    cmd += ["--dynamo_backend", "no", "-m", "icu_unlearn.cli"]
    # one thread per process; caches, accelerate's config lookup and torchelastic's logs go under tmp_path
    work = tmp_path / "launch"
    env = subprocess_env(work, OMP_NUM_THREADS="1", PET_STANDALONE="1", LOGLEVEL="INFO")
    proc = subprocess.run(
        [*cmd, *argv, "--out", str(tmp_path / "two")], capture_output=True, text=True, env=env, cwd=work,
        timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--rdzv-endpoint=localhost:0" in proc.stderr  # torchrun's standalone rendezvous (LOGLEVEL=INFO)
    assert proc.stdout.count("stage 1 (ga_diff)") == 1, "only the main process prints"
    a = load_file(str(tmp_path / "one" / "stage_1" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "two" / "stage_1" / "adapter_model.safetensors"))
    keys = [k for k in a if "lora_B" in k]  # lora_B starts at 0: its value is the whole update
    diff = sum(float(torch.sum((a[k] - b[k]) ** 2)) for k in keys) ** 0.5
    norm = sum(float(torch.sum(a[k] ** 2)) for k in keys) ** 0.5
    assert norm > 0 and diff / norm < 1e-4
    import json

    assert json.loads((tmp_path / "two" / "stage_1" / "stage.json").read_text())["world_size"] == 2
