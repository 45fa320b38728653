"""Bad input through the real ``icu-bench`` CLI: one ``error:`` line, exit 2, nothing written.

Every case runs the CLI's ``main`` in this process (:func:`tests.cli_helpers.call_cli`, output captured) and
compares a snapshot (relative path → size, mtime, sha256) of every dir the command touches — the data dir, the
base model, the parent stage, the output and the working dir — before and after. Data corruptions are made on
copies of the shared small data set; parent stages are cheap one-step GA stages on the *untrained* tiny model
(enough for error paths). That a refusal costs no torch import (so well under 2 s from a cold start) is checked
once, in a subprocess, at the end.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.cli_helpers import CLI, assert_one_error, call_cli, cli_env, edit_json, snapshot

# ----------------------------------------------------------------------------------------------- data copies


def _corrupt_parquet(d: Path) -> None:
    (d / "qa.parquet").write_bytes(b"PAR1 this is not a parquet file")


def _missing_image(d: Path) -> None:
    rows = pq.read_table(d / "qa.parquet").to_pylist()
    (d / next(r["image"] for r in rows if r["image"])).unlink()


def _wrong_column_type(d: Path) -> None:
    table = pq.read_table(d / "qa.parquet")
    i = table.schema.get_field_index("forget_task")
    as_text = pa.array([str(v) for v in table.column("forget_task").to_pylist()])
    pq.write_table(table.set_column(i, "forget_task", as_text), d / "qa.parquet")


def _empty_forget_task(d: Path) -> None:
    table = pq.read_table(d / "qa.parquet")
    pq.write_table(table.filter(pc.not_equal(table["forget_task"], 2)), d / "qa.parquet")


def _overlapping_tasks(d: Path) -> None:
    table = pq.read_table(d / "qa.parquet")
    rows = table.to_pylist()
    profile = next(r["profile_id"] for r in rows if r["forget_task"] == 2)
    next(r for r in rows if r["profile_id"] == profile)["forget_task"] = 1
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), d / "qa.parquet")


def _damaged_png(d: Path) -> None:
    """Zero the second half of a referenced image (its header stays: only decoding notices)."""
    rows = pq.read_table(d / "qa.parquet").to_pylist()
    path = d / next(r["image"] for r in rows if r["image"])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + bytes(len(data) - len(data) // 2))


def _data_is_file(d: Path) -> None:
    shutil.rmtree(d)
    d.write_text("not a data dir\n")


#: corruption id → (how to break a copy of the data, what the error line must say)
CORRUPTIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "corrupted_parquet": (_corrupt_parquet, "is not a readable parquet file"),
    "missing_image": (_missing_image, "is missing from"),
    "wrong_column_type": (_wrong_column_type, "column 'forget_task' has type string, expected int32"),
    "empty_forget_task": (_empty_forget_task, "forget task 2 has no rows"),
    "overlapping_forget_tasks": (_overlapping_tasks, "forget tasks 1 and 2 overlap"),
    "data_dir_is_a_file": (_data_is_file, "is a file, not a directory"),
    "damaged_png": (_damaged_png, "is not a readable PNG"),
}


@pytest.fixture(scope="module")
def broken_data(tmp_path_factory: pytest.TempPathFactory, small_data_dir: Path) -> dict[str, Path]:
    """One corrupted copy of the small data set per entry of :data:`CORRUPTIONS`."""
    root = tmp_path_factory.mktemp("broken_data")
    out = {}
    for name, (corrupt, _) in CORRUPTIONS.items():
        shutil.copytree(small_data_dir, root / name)
        corrupt(root / name)
        out[name] = root / name
    return out


def _data_command(command: str, data: Path, base: Path, out: Path) -> list[str]:
    if command == "validate":
        return ["data", "validate", str(data)]
    if command == "unlearn":
        return ["unlearn", "--method", "ga", "--model", str(base), "--data", str(data), "--stage", "1"] + [
            "--out",
            str(out),
            "--max-steps",
            "1",
        ]
    return ["run", "--model", str(base), "--data", str(data), "--stages", "1", "--out", str(out)]


#: a damaged image is found by `data validate` (every image decoded); training reads only the images it uses
DATA_CASES = [
    (c, cmd) for c in CORRUPTIONS for cmd in ("validate", "unlearn") if (c, cmd) != ("damaged_png", "unlearn")
]
DATA_CASES += [("missing_image", "run"), ("data_dir_is_a_file", "run")]


@pytest.mark.parametrize(("corruption", "command"), DATA_CASES, ids=[f"{c}-{m}" for c, m in DATA_CASES])
def test_bad_data_is_one_error_line(
    corruption: str, command: str, broken_data: dict[str, Path], tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = broken_data[corruption]
    roots = [tmp_path, data, tiny_model_dir]
    before = snapshot(*roots)
    proc = call_cli(_data_command(command, data, tiny_model_dir, tmp_path / "run"), cwd=tmp_path)
    assert_one_error(proc, CORRUPTIONS[corruption][1])
    assert snapshot(*roots) == before


# ----------------------------------------------------------------------------------------------- parent stages


def _stage(base: Path, data: Path, run: Path) -> Path:
    from icu_unlearn.methods import build_method
    from icu_unlearn.training.unlearn import run_stage

    method = build_method("ga", max_steps=1, batch_size=2)
    return run_stage(method, base, data, 1, run, device="cpu").path


def _other_weights(model_dir: Path) -> Path:
    """Change one weight of a copied model dir: another base model by content (a mere copy is the same one)."""
    from safetensors.torch import load_file, save_file

    weights = load_file(str(model_dir / "model.safetensors"))
    name = sorted(weights)[0]
    weights[name] = weights[name] + 1.0
    save_file(weights, str(model_dir / "model.safetensors"), metadata={"format": "pt"})
    return model_dir


@pytest.fixture(scope="module")
def parents(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, small_data_dir: Path
) -> dict[str, Path]:
    """Stage-1 dirs that must not be accepted as ``--from`` of stage 2 on (tiny model, small data), plus a good one."""
    from icu_tasks.data.generate import generate
    from tests.fixtures_data import SMALL_SCALE

    root = tmp_path_factory.mktemp("parents")
    good = _stage(tiny_model_dir, small_data_dir, root / "good")
    other_data = root / "other_data"
    generate(other_data, workers=1, progress=False, **(SMALL_SCALE | {"seed": 1}))
    other_base = _other_weights(shutil.copytree(tiny_model_dir, root / "other_base"))
    out = {
        "good": good,
        "stage_from_other_data": _stage(tiny_model_dir, other_data, root / "run_other_data"),
        "stage_from_other_base": _stage(other_base, small_data_dir, root / "run_other_base"),
    }
    for name in ("adapter_for_other_base", "bin_weights", "corrupted_weights"):
        out[name] = shutil.copytree(good, root / name / "stage_1")
    # A stage.json written before base models were identified by content: its adapter config's path decides.
    old_record = json.loads((out["adapter_for_other_base"] / "stage.json").read_text())
    old_record.pop("base_model_id")
    (out["adapter_for_other_base"] / "stage.json").write_text(json.dumps(old_record))
    edit_json(
        out["adapter_for_other_base"] / "adapter_config.json",
        lambda record: record.update(base_model_name_or_path=str(other_base)),
    )
    (out["bin_weights"] / "adapter_model.safetensors").rename(out["bin_weights"] / "adapter_model.bin")
    (out["corrupted_weights"] / "adapter_model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    return out


PARENT_CASES = {
    "stage_from_other_data": "was trained on other data",
    "stage_from_other_base": "was trained on base model",
    "adapter_for_other_base": "was trained on base model",
    "bin_weights": "has adapter_model.bin but no adapter_model.safetensors",
    "corrupted_weights": "is not a readable safetensors file",
}


@pytest.mark.parametrize("case", list(PARENT_CASES), ids=list(PARENT_CASES))
def test_bad_parent_stage_is_one_error_line(
    case: str, parents: dict[str, Path], tiny_model_dir: Path, small_data_dir: Path, tmp_path: Path
) -> None:
    parent = parents[case]
    roots = [tmp_path, parent, tiny_model_dir, small_data_dir]
    before = snapshot(*roots)
    args = ["unlearn", "--method", "ga", "--base", str(tiny_model_dir), "--data", str(small_data_dir)]
    args += ["--stage", "2", "--from", str(parent), "--out", str(tmp_path / "run"), "--max-steps", "1"]
    assert_one_error(call_cli(args, cwd=tmp_path), PARENT_CASES[case])
    assert snapshot(*roots) == before


def test_good_parent_stage_is_accepted(
    parents: dict[str, Path], tiny_model_dir: Path, small_data_dir: Path
) -> None:
    """The control of the cases above: the unmodified stage 1 passes the same checks."""
    from icu_tasks.data.dataset import open_data
    from icu_unlearn.training.stage_dir import check_parent

    record = check_parent(parents["good"], 2, open_data(small_data_dir).data_hash, str(tiny_model_dir))
    assert record["stage"] == 1


# ----------------------------------------------------------------------------------------------- arguments


def _unlearn(base: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["unlearn", "--model", str(base), "--data", str(data), "--stage", "1", "--out", str(out), *extra]


def _finetune(base: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["finetune", "--model", str(base), "--data", str(data), "--out", str(out), *extra]


def _run(base: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "--model", str(base), "--data", str(data), "--stages", "1", "--out", str(out), *extra]


#: case id → (command builder, its extra flags, what the error line must say)
ARG_CASES: dict[str, tuple[Callable[..., list[str]], tuple[str, ...], str]] = {
    "unknown_method": (
        _unlearn,
        ("--method", "npo_dif"),
        "unknown unlearning method 'npo_dif'; did you mean 'npo_diff'?",
    ),
    "unknown_method_run": (_run, ("--method", "GA_dif"), "did you mean 'ga_diff'?"),
    "negative_learning_rate": (
        _unlearn,
        ("--method", "ga", "--lr", "-1"),
        "learning_rate must be > 0, got -1.0",
    ),
    "zero_steps": (_unlearn, ("--method", "npo", "--max-steps", "0"), "max_steps must be > 0, got 0"),
    "negative_batch_size_run": (_run, ("--set", "batch_size=-1"), "batch_size must be >= 0, got -1"),
    "negative_learning_rate_run": (_run, ("--set", "learning_rate=-1e-3"), "learning_rate must be > 0"),
    "flag_of_another_method": (
        _unlearn,
        ("--method", "ga", "--beta", "0.5"),
        "--beta does not apply to method 'ga'",
    ),
    "non_numeric_run": (_run, ("--set", "max_steps=lots"), "max_steps must be an int, got 'lots'"),
    "zero_stages_run": (_run, ("--stages", "0"), "stages must be >= 1, got 0"),
    "stage_zero": (_unlearn, ("--method", "ga", "--stage", "0"), "stage must be >= 1"),
    "negative_weight_decay_finetune": (_finetune, ("--weight-decay", "-0.1"), "weight_decay must be >= 0"),
}


@pytest.mark.parametrize("case", list(ARG_CASES), ids=list(ARG_CASES))
def test_bad_arguments_are_one_error_line(
    case: str, tiny_model_dir: Path, small_data_dir: Path, tmp_path: Path
) -> None:
    build, extra, message = ARG_CASES[case]
    roots = [tmp_path, tiny_model_dir, small_data_dir]
    before = snapshot(*roots)
    assert_one_error(
        call_cli(build(tiny_model_dir, small_data_dir, tmp_path / "run", *extra), cwd=tmp_path), message
    )
    assert snapshot(*roots) == before


def test_numbers_written_as_text_are_accepted() -> None:
    """``--set learning_rate=1e-3`` (the docs' example) reaches the config as the string '1e-3' (YAML 1.1)."""
    from icu_unlearn.methods import build_method

    cfg = build_method("npo_diff", learning_rate="1e-3", max_steps=1e2, retain_weight="3").config
    assert (cfg.learning_rate, cfg.max_steps, cfg.retain_weight) == (1e-3, 100, 3.0)


def test_out_dir_that_is_a_file(tiny_model_dir: Path, small_data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "run").write_text("a file\n")
    roots = [tmp_path, tiny_model_dir, small_data_dir]
    before = snapshot(*roots)
    proc = call_cli(
        _unlearn(tiny_model_dir, small_data_dir, tmp_path / "run", "--method", "ga"), cwd=tmp_path
    )
    assert_one_error(proc, "is a file, not a directory")
    assert snapshot(*roots) == before


def test_unknown_task_is_refused_before_any_work(
    tiny_model_dir: Path, small_data_dir: Path, tmp_path: Path
) -> None:
    roots = [tmp_path, tiny_model_dir, small_data_dir]
    before = snapshot(*roots)
    proc = call_cli(
        _run(
            tiny_model_dir, small_data_dir, tmp_path / "run", "--tasks", "icu,icu_forget_vq", "--limit", "1"
        ),
        cwd=tmp_path,
    )
    assert_one_error(proc, "unknown lmms-eval task or group 'icu_forget_vq'; did you mean 'icu_forget_vqa'?")
    assert snapshot(*roots) == before


# ----------------------------------------------------------------------------------------------- the user's path


def _model_copy(tiny: Path, tmp_path: Path, change: str) -> Path:
    """A copy of the tiny model with ``config.json`` emptied to ``{}`` or its weights removed."""
    model = shutil.copytree(tiny, tmp_path / f"model_{change}")
    if change == "empty_config":
        (model / "config.json").write_text("{}\n")
    else:
        (model / "model.safetensors").unlink()
    return model


def _a_file(tmp_path: Path) -> Path:
    (tmp_path / "a_file").write_text("not a dir\n")
    return tmp_path / "a_file"


#: case id → (args from (tiny model, data, tmp dir), what the error line must say)
USER_CASES: dict[str, tuple[Callable[[Path, Path, Path], list], str]] = {
    "demo_zero_stages": (lambda m, d, t: ["demo", "--stages", "0", "--out", t / "demo"], "--stages must be"),
    "demo_unknown_method": (
        lambda m, d, t: ["demo", "--method", "npo_dif", "--out", t / "demo"],
        "did you mean 'npo_diff'?",
    ),
    "generate_under_a_file": (
        lambda m, d, t: ["data", "generate", "--out", _a_file(t) / "x", "--profiles", "12", "--tasks", "2"],
        "a_file is a file, not a directory",
    ),
    "unlearn_dry_run_empty_config": (
        lambda m, d, t: _unlearn(
            _model_copy(m, t, "empty_config"), d, t / "run", "--method", "ga", "--dry-run"
        ),
        "config.json names no model_type",
    ),
    "unlearn_dry_run_no_weights": (
        lambda m, d, t: _unlearn(
            _model_copy(m, t, "no_weights"), d, t / "run", "--method", "ga", "--dry-run"
        ),
        "has no weights",
    ),
    "run_dry_run_unknown_device": (
        lambda m, d, t: _run(m, d, t / "run", "--dry-run", "--device", "gpu"),
        "unknown device 'gpu'",
    ),
    "unlearn_unknown_device": (
        lambda m, d, t: _unlearn(m, d, t / "run", "--method", "ga", "--device", "gpu"),
        "unknown device 'gpu'",
    ),
    "report_negative_bootstrap": (
        lambda m, d, t: ["report", t / "run", "--bootstrap", "-5"],
        "--bootstrap must be >= 0",
    ),
    "sweep_unknown_key": (
        lambda m, d, t: (
            ["sweep", "--method", "ga", "--model", m, "--data", d, "--out", t / "s"]
            + ["--grid", "learning_rat=1e-3"]
        ),
        "did you mean 'learning_rate'?",
    ),
    "missing_required_flag": (lambda m, d, t: ["unlearn", "--method", "ga"], "arguments are required"),
    "unknown_dtype": (
        lambda m, d, t: _unlearn(m, d, t / "run", "--method", "ga", "--dtype", "fp8"),
        "unknown dtype 'fp8' (expected float32, bfloat16, float16 or auto)",
    ),
    "float16_training_on_cpu": (
        lambda m, d, t: _run(m, d, t / "run", "--dry-run", "--device", "cpu", "--dtype", "fp16"),
        "float16 training needs a GPU",
    ),
    "malformed_utility_task": (
        lambda m, d, t: _run(m, d, t / "run", "--dry-run", "--utility-tasks", "pope:"),
        "a utility task is TASK or TASK:METRIC, got 'pope:'",
    ),
    "half_precision_full_finetune": (
        lambda m, d, t: _finetune(m, d, t / "vanilla", "--dtype", "bfloat16"),
        "--dtype bfloat16 needs --mode lora",
    ),
}


@pytest.mark.parametrize("case", list(USER_CASES), ids=list(USER_CASES))
def test_user_path_holes_are_one_error_line(
    case: str, tiny_model_dir: Path, small_data_dir: Path, tmp_path: Path
) -> None:
    build, message = USER_CASES[case]
    args = build(tiny_model_dir, small_data_dir, tmp_path)  # makes the case's inputs first
    roots = [tmp_path, tiny_model_dir, small_data_dir]
    before = snapshot(*roots)
    proc = call_cli(args, cwd=tmp_path)
    assert proc.returncode == 2
    assert_one_error(proc, message)
    assert snapshot(*roots) == before


#: refusals that must cost no torch import (the last one imports lmms-eval's task list, not torch)
FAST_CASES = (
    "demo_zero_stages",
    "run_dry_run_unknown_device",
    "sweep_unknown_key",
    "report_negative_bootstrap",
    "float16_training_on_cpu",
)


def test_refusals_import_no_torch(tiny_model_dir: Path, small_data_dir: Path, tmp_path: Path) -> None:
    """A fresh interpreter refuses each of :data:`FAST_CASES` without importing torch (< 2 s from cold)."""
    calls = [[str(a) for a in USER_CASES[c][0](tiny_model_dir, small_data_dir, tmp_path)] for c in FAST_CASES]
    script = (
        "import json, sys\nfrom icu_unlearn.cli import main\n"
        "def call(args):\n    try:\n        return main(args)\n    except SystemExit as exc:\n        return exc.code\n"
        f"codes = [call(a) for a in {calls!r}]\n"
        "print(json.dumps([codes, 'torch' in sys.modules]))\n"
    )
    proc = subprocess.run(
        [CLI[0], "-c", script], cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120
    )
    codes, torch_imported = json.loads(proc.stdout.strip().splitlines()[-1])
    assert codes == [2] * len(FAST_CASES), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == len(FAST_CASES), proc.stderr
    assert not torch_imported
