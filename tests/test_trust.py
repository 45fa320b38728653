"""Trustworthy runs: data identity, content identity of models and stages, fail before writing, quiet.

Everything runs on real files with the fast fixtures: the *untrained* tiny model saved the way ``finetune`` saves
the vanilla model (so its ``finetune.json`` records the data hash and model id), two generated small data sets
with different seeds, one-step GA stages, and copies of them in other places. Identity and refusal checks do
not depend on what the weights know, so the fine-tuned fixture is not needed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from icu_tasks.data.dataset import open_data
from icu_tasks.errors import DataError, StageError
from icu_tasks.records.files import icu_bench_version
from icu_tasks.records.provenance import short
from tests.cli_helpers import assert_one_error, call_cli, cli_env, run_cli, snapshot

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def other_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small data set generated with seed 1: same scale and layout, other people, other data hash."""
    from icu_tasks.data.generate import generate
    from tests.fixtures_data import SMALL_SCALE

    root = tmp_path_factory.mktemp("trust_data") / "seed1"
    generate(root, workers=1, progress=False, **(SMALL_SCALE | {"seed": 1}))
    return root


@pytest.fixture(scope="module")
def vanilla(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, small_data_dir: Path) -> Path:
    """The tiny model saved by the fine-tune's own writer, with the record a fine-tune on the small data writes."""
    from icu_unlearn.models import load_base
    from icu_unlearn.training.finetune import _save_model_dir

    data = open_data(small_data_dir)
    model, processor = load_base(tiny_model_dir)
    record = {"base_model": str(tiny_model_dir), "data_dir": str(data.root), "data_hash": data.data_hash}
    out = tmp_path_factory.mktemp("trust_models") / "vanilla"
    _save_model_dir(out, model, processor, record, overwrite=False)
    return out


def _stage(base: Path, data: Path, run: Path, k: int = 1, **kw: object) -> Path:
    from icu_unlearn.methods import build_method
    from icu_unlearn.training.unlearn import run_stage

    method = build_method("ga", max_steps=1, batch_size=2)
    return run_stage(method, base, data, k, run, device="cpu", **kw).path


@pytest.fixture(scope="module")
def run1(tmp_path_factory: pytest.TempPathFactory, vanilla: Path, small_data_dir: Path) -> Path:
    """A run dir with stage 1 (one GA step) on :func:`vanilla`."""
    run = tmp_path_factory.mktemp("trust_runs") / "run"
    _stage(vanilla, small_data_dir, run)
    return run


def _hashes(*dirs: Path) -> list[str]:
    return [short(open_data(d).data_hash) for d in dirs]


# ----------------------------------------------------------------------------------------------- data identity


def test_every_artefact_records_its_identity(vanilla: Path, run1: Path, small_data_dir: Path) -> None:
    from icu_unlearn.models.identity import compute_model_id, model_id, stage_id

    finetune = json.loads((vanilla / "finetune.json").read_text())
    assert finetune["model_id"] == compute_model_id(vanilla) == model_id(vanilla)
    record = json.loads((run1 / "stage_1" / "stage.json").read_text())
    assert record["data_hash"] == open_data(small_data_dir).data_hash == record["base_data_hash"]
    assert record["base_model_id"] == finetune["model_id"]
    assert record["stage_id"] == stage_id(run1 / "stage_1")
    card = (run1 / "stage_1" / "README.md").read_text()
    assert "[More Information Needed]" not in card
    for needle in ("stage 1 (ga)", record["data_hash"], record["base_model_id"], "PeftModel.from_pretrained"):
        assert needle in card
    assert "--model icu_hf" in card and "adapter=" in card


@pytest.mark.parametrize("command", ["unlearn", "run"])
def test_other_data_is_refused_with_both_hashes(
    command: str, vanilla: Path, small_data_dir: Path, other_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    args = [command, "--method", "ga", "--base", str(vanilla), "--data", str(other_data), "--out", str(out)]
    args += ["--stage", "1", "--max-steps", "1"] if command == "unlearn" else ["--stages", "1"]
    roots = [tmp_path, vanilla, other_data]
    before = snapshot(*roots)
    line = assert_one_error(call_cli(args, cwd=tmp_path), *_hashes(small_data_dir, other_data))
    assert str(small_data_dir) in line and str(other_data) in line and "--allow-data-mismatch" in line
    assert snapshot(*roots) == before and not out.exists()


def test_the_override_is_explicit(vanilla: Path, other_data: Path, tmp_path: Path) -> None:
    args = ["unlearn", "--method", "ga", "--base", str(vanilla), "--data", str(other_data), "--stage", "1"]
    args += ["--out", str(tmp_path / "run"), "--dry-run"]
    assert call_cli(args, cwd=tmp_path).returncode == 2
    proc = call_cli([*args, "--allow-data-mismatch"], cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("ok: ga can forget task 1"), proc.stderr
    assert not (tmp_path / "run").exists()  # a dry run writes nothing


def test_icu_hf_checks_data_and_stage_before_loading(
    vanilla: Path, run1: Path, small_data_dir: Path, other_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import icu_unlearn.models.loading as loading
    from icu_unlearn.scoring.icu_hf import IcuHF

    real_load = loading.load_base

    def no_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the checks")

    monkeypatch.setattr(loading, "load_base", no_load)
    monkeypatch.setenv("ICU_DATA_DIR", str(other_data))
    for args in ({}, {"adapter": str(run1 / "stage_1")}):
        with pytest.raises(DataError) as err:
            IcuHF(pretrained=str(vanilla), **args)
        for needle in (*_hashes(small_data_dir, other_data), "allow_data_mismatch=true", "$ICU_DATA_DIR"):
            assert needle in str(err.value)
    monkeypatch.setattr(loading, "load_base", real_load)
    lm = IcuHF(pretrained=str(vanilla), adapter=str(run1 / "stage_1"), allow_data_mismatch="true")
    assert lm.adapter == str(run1 / "stage_1")


def _eval(lm: object, run: Path, k: int, data: Path) -> None:
    from icu_unlearn.scoring.evaluate import score

    score(lm, "pretrained=x", ["icu_forget_qa"], run / "eval" / f"stage_{k}", data_dir=data, limit=1)


def test_evaluations_record_their_data_and_report_checks_it(
    vanilla: Path, run1: Path, small_data_dir: Path, other_data: Path, tmp_path: Path
) -> None:
    from icu_tasks.records.provenance import eval_data
    from icu_unlearn.models import load_base
    from icu_unlearn.scoring.icu_hf import IcuHF

    run = shutil.copytree(run1, tmp_path / "run")
    model, processor = load_base(vanilla)
    lm = IcuHF.from_loaded(model, processor, batch_size=1, max_new_tokens=2)
    roots = [tmp_path]
    before = snapshot(*roots)
    assert_one_error(call_cli(["report", str(run)], cwd=tmp_path), "nothing to report for", str(run))
    assert snapshot(*roots) == before
    _eval(lm, run, 0, small_data_dir)
    _eval(lm, run, 1, other_data)
    recorded = {k: eval_data(run / "eval" / f"stage_{k}") for k in (0, 1)}
    assert [(h, d) for h, d, _ in recorded[0]] == [(open_data(small_data_dir).data_hash, str(small_data_dir))]
    assert [(h, d) for h, d, _ in recorded[1]] == [(open_data(other_data).data_hash, str(other_data))]
    before = snapshot(*roots)
    line = assert_one_error(
        call_cli(["report", str(run)], cwd=tmp_path), *_hashes(other_data, small_data_dir)
    )
    assert "eval/stage_1/" in line and str(other_data) in line
    assert snapshot(*roots) == before
    proc = call_cli(["report", str(run), "--allow-data-mismatch"], cwd=tmp_path)
    assert proc.returncode == 0 and (run / "report" / "report.md").is_file(), proc.stderr


# ----------------------------------------------------------------------------------------------- content identity


def test_copied_vanilla_and_run_score_and_continue(
    vanilla: Path, run1: Path, small_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cp -r` of the vanilla model and the run (originals kept): the copies load, score and continue."""
    from icu_unlearn.models.identity import model_id, stage_id
    from icu_unlearn.scoring.icu_hf import IcuHF

    base = shutil.copytree(vanilla, tmp_path / "demo" / "vanilla")
    run = shutil.copytree(run1, tmp_path / "demo" / "run")
    assert model_id(base) == model_id(vanilla) and stage_id(run / "stage_1") == stage_id(run1 / "stage_1")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ICU_DATA_DIR", str(small_data_dir))
    lm = IcuHF(pretrained="demo/vanilla", adapter="demo/run/stage_1")  # relative, as in the report
    assert lm.adapter == "demo/run/stage_1"
    stage2 = _stage(Path("demo/vanilla"), small_data_dir, Path("demo/run"), 2)
    parent = json.loads((stage2 / "stage.json").read_text())["parent"]
    assert parent["stage_id"] == stage_id(run / "stage_1")


def test_copied_run_resumes_with_new_paths(vanilla: Path, small_data_dir: Path, tmp_path: Path) -> None:
    """`icu-bench run` on a copied vanilla model + run dir: everything complete is skipped, run.json follows."""
    from icu_unlearn.pipeline.run import RunConfig, run

    def config(base: Path, data: Path) -> RunConfig:
        args = {"max_steps": 1, "batch_size": 2}
        return RunConfig(str(base), str(data), "ga", 1, args, ["icu_forget_qa"], batch_size=2, limit=1)

    run(config(vanilla, small_data_dir), tmp_path / "a" / "run", log=lambda m: None)
    base = shutil.copytree(vanilla, tmp_path / "b" / "vanilla")
    data = shutil.copytree(small_data_dir, tmp_path / "b" / "data")
    out = shutil.copytree(tmp_path / "a" / "run", tmp_path / "b" / "run")
    logs: list[str] = []
    run(config(base, data), out, log=logs.append)
    assert [m for m in logs if m.endswith("skipped")] == [
        "stage 0/1: scores complete, skipped",
        "stage 1/1: complete, skipped",
        "stage 1/1: scores complete, skipped",
    ]
    record = json.loads((out / "run.json").read_text())
    assert (record["base"], record["data"]) == (str(base), str(data))


def test_other_weights_are_another_base_model(
    vanilla: Path, run1: Path, small_data_dir: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file, save_file

    from icu_unlearn.models.identity import model_id

    other = shutil.copytree(vanilla, tmp_path / "other")
    (other / "finetune.json").unlink()  # a model without the record: identity is computed from its files
    weights = load_file(str(other / "model.safetensors"))
    name = sorted(weights)[0]
    weights[name] = weights[name] + 1.0
    save_file(weights, str(other / "model.safetensors"), metadata={"format": "pt"})
    assert model_id(other) != model_id(vanilla)
    args = ["unlearn", "--method", "ga", "--base", str(other), "--data", str(small_data_dir), "--stage", "2"]
    args += ["--from", str(run1 / "stage_1"), "--out", str(tmp_path / "run"), "--max-steps", "1"]
    before = snapshot(tmp_path, run1)
    line = assert_one_error(
        call_cli(args, cwd=tmp_path), "was trained on base model", short(model_id(vanilla))
    )
    assert short(model_id(other)) in line
    assert snapshot(tmp_path, run1) == before


def test_records_with_paths_only_fall_back_to_paths(
    vanilla: Path, run1: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """A stage.json written before identities were recorded is still read, and compared by path."""
    from icu_unlearn.models.loading import check_adapter_files

    old = shutil.copytree(run1 / "stage_1", tmp_path / "old" / "stage_1")
    record = json.loads((old / "stage.json").read_text())
    for key in ("base_model_id", "stage_id", "base_data_hash"):
        record.pop(key)
    (old / "stage.json").write_text(json.dumps(record))
    assert check_adapter_files(old, vanilla)["base_model_name_or_path"] == str(vanilla)
    with pytest.raises(StageError, match="was trained on base model"):
        check_adapter_files(old, tiny_model_dir)  # same weights, but an old record only knows paths


def test_run_json_is_compared_by_identity(tmp_path: Path) -> None:
    from icu_unlearn.pipeline.rundir import RunDir

    rd = RunDir(tmp_path / "run")
    ids = {"base_model_id": "m" * 64, "data_hash": "d" * 64, "method": "ga", "stages": 2}
    rd.check_config({"base": "/a/vanilla", "data": "/a/data", "name": "run"} | ids)
    moved = {"base": "/b/vanilla", "data": "/b/data", "name": "run2"} | ids
    rd.check_config(moved)  # moved: accepted, and run.json follows the new paths
    stamp = {"format_version": 1, "icu_bench_version": icu_bench_version()}
    assert json.loads(rd.config_path.read_text()) == stamp | moved
    with pytest.raises(DataError, match=f"{'d' * 16}.*{'e' * 16}"):
        rd.check_config(moved | {"data_hash": "e" * 64})
    with pytest.raises(StageError, match="differs in: stages"):
        rd.check_config(moved | {"stages": 3})
    old = RunDir(tmp_path / "old")
    old.check_config({"base": "/a/vanilla", "data": "/a/data", "method": "ga"})  # paths only (old format)
    with pytest.raises(StageError, match="differs in: base"):
        old.check_config({"base": "/b/vanilla", "data": "/a/data", "method": "ga"} | ids)


# ----------------------------------------------------------------------------------------------- fail before writing


@pytest.mark.subprocess
@pytest.mark.parametrize("command", ["unlearn", "run", "finetune"])
def test_a_typo_in_the_base_is_instant_and_writes_nothing(
    command: str, small_data_dir: Path, tmp_path: Path
) -> None:
    flag = "--model" if command == "finetune" else "--base"
    args = [command, flag, "runs/vanila", "--data", str(small_data_dir), "--out", str(tmp_path / "out")]
    args += {"unlearn": ["--method", "ga", "--stage", "1"], "run": ["--method", "ga"], "finetune": []}[
        command
    ]
    env = {k: v for k, v in cli_env().items() if not k.endswith("_OFFLINE")}  # a hub call would be tried
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "icu_unlearn.cli", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    assert_one_error(proc, "model dir not found:", "runs/vanila", "not a model id in the local HF cache")
    assert seconds < 30 and not list(tmp_path.iterdir())  # no hub retries; no run dir, lock or run.json


def test_a_hub_id_loads_from_the_local_cache_only(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`org/model` is a model id only when the HF cache has it: then it loads from there, with no hub call."""
    import huggingface_hub.constants

    from icu_tasks.errors import ConfigError
    from icu_unlearn.models.loading import load_base, resolve_model_dir

    repo = tmp_path / "hub" / "models--icu-test--tiny"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_model_dir("icu-test/tiny") == repo / "snapshots" / "abc123"
    model, _ = load_base("icu-test/tiny")
    assert Path(model.name_or_path) == repo / "snapshots" / "abc123"
    with pytest.raises(ConfigError, match="not a model id in the local HF cache"):
        resolve_model_dir("icu-test/other")


def test_shell_loop_rejects_a_bad_method_before_scoring(
    vanilla: Path, small_data_dir: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    cmd = ["bash", str(REPO / "examples" / "continual_loop.sh"), str(vanilla), str(small_data_dir), str(run)]
    env = cli_env(PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run([*cmd, "npo_dif", "2"], env=env, capture_output=True, text=True, timeout=300)
    assert_one_error(proc, "unknown unlearning method 'npo_dif'; did you mean 'npo_diff'?")
    assert proc.returncode == 2 and not run.exists()  # no stage-0 evaluation, no eval dir


@pytest.mark.subprocess
def test_validate_checks_every_promised_image(small_data_dir: Path, tmp_path: Path) -> None:
    data = shutil.copytree(small_data_dir, tmp_path / "data")
    full = sorted((data / "images").rglob("full_0.png"))[0]
    full.unlink()  # referenced by no QA row: only profiles.parquet and the manifest promise it
    rel = full.relative_to(data).as_posix()
    assert_one_error(
        run_cli(["data", "validate", str(data)], cwd=tmp_path), f"image file {rel}", "is missing"
    )


# ----------------------------------------------------------------------------------------------- quiet


def test_unlearn_prints_no_loss_dicts_and_no_pin_memory_warning(
    vanilla: Path, small_data_dir: Path, tmp_path: Path
) -> None:
    args = [
        "unlearn",
        "--method",
        "ga",
        "--base",
        str(vanilla),
        "--data",
        str(small_data_dir),
        "--stage",
        "1",
    ]
    args += [
        "--out",
        str(tmp_path / "run"),
        "--max-steps",
        "2",
        "--batch-size",
        "2",
    ]  # no --device: pin_memory on
    proc = run_cli(args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == [f"stage 1 (ga): {tmp_path / 'run' / 'stage_1'}"]
    assert "pin_memory" not in proc.stderr and "{'loss'" not in proc.stderr + proc.stdout
    assert "loss=" in proc.stderr  # the loss is in the progress bar instead
