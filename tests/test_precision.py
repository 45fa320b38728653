"""``--dtype``: the precision a model is loaded, trained and scored in (icu_unlearn.models.precision)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors import safe_open

from icu_tasks.errors import ConfigError, StageError
from icu_unlearn.models.precision import check_training_dtype, dtype_name, trainer_precision
from icu_unlearn.pipeline.rundir import RunDir


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("bf16", "bfloat16"),
        ("torch.bfloat16", "bfloat16"),
        ("FP32", "float32"),
        ("half", "float16"),
        (None, "auto"),
    ],
)
def test_spellings_resolve_to_one_name(spelling, name):
    assert dtype_name(spelling) == name


def test_what_training_cannot_do_is_refused():
    with pytest.raises(ConfigError, match="unknown dtype 'int8'"):
        dtype_name("int8")
    with pytest.raises(ConfigError, match="float16 training needs a GPU"):
        check_training_dtype("fp16", "cpu")
    with pytest.raises(ConfigError, match="--dtype bfloat16 needs --mode lora"):
        check_training_dtype("bf16", "cpu", full_weights=True)
    assert check_training_dtype("bf16", "cpu") == "bfloat16"
    assert check_training_dtype("float16", "cuda") == "float16"
    assert check_training_dtype("auto", "cpu", full_weights=True) == "auto"


def test_half_precision_trains_under_the_trainers_mixed_precision():
    assert trainer_precision("torch.bfloat16", "cpu") == {"bf16": True, "fp16": False}
    assert trainer_precision("float16", "cuda") == {"bf16": False, "fp16": True}
    assert trainer_precision("float32", "cpu") == {"bf16": False, "fp16": False}
    assert trainer_precision(None, "cpu") == {"bf16": False, "fp16": False}


def test_a_run_json_without_dtype_resumes_as_auto(tiny_model_dir: Path, small_data_dir: Path, tmp_path: Path):
    """A run dir whose run.json has no ``dtype`` (nor ``utility_tasks``) is the same config as ``dtype: auto``
    and no utility tasks: it resumes; another dtype is refused with the key named."""
    from icu_unlearn.pipeline.run import RunConfig
    from icu_unlearn.scoring.preflight import check_run_inputs

    def config(**kw):
        return RunConfig(base=str(tiny_model_dir), data=str(small_data_dir), method="ga", stages=2, **kw)

    rd = RunDir(tmp_path / "old")
    _, record = check_run_inputs(config(), rd, overwrite=False, allow_data_mismatch=False)
    old = {k: v for k, v in record.items() if k not in ("dtype", "utility_tasks")}
    rd.root.mkdir()
    rd.config_path.write_text(json.dumps(old))
    _, again = check_run_inputs(config(), rd, overwrite=False, allow_data_mismatch=False)
    assert again == old
    with pytest.raises(StageError, match=r"differs in: dtype"):
        check_run_inputs(config(dtype="bf16"), rd, overwrite=False, allow_data_mismatch=False)


def test_a_bfloat16_stage_keeps_float32_adapter_weights(tiny_model_dir: Path, small_data_dir: Path, tmp_path):
    """A stage trained with ``dtype="bfloat16"`` on CPU: the base loads in bfloat16, the Trainer runs under
    bf16 autocast, the saved LoRA weights are float32 and stage.json says which precision it ran in."""
    from icu_unlearn.methods import build_method
    from icu_unlearn.training.unlearn import run_stage

    method = build_method("ga", max_steps=2, batch_size=2)
    result = run_stage(
        method, tiny_model_dir, small_data_dir, 1, tmp_path / "run", device="cpu", dtype="bf16"
    )
    assert result.record["dtype"] == "bfloat16"
    assert json.loads((result.path / "stage.json").read_text())["dtype"] == "bfloat16"
    assert result.record["steps"] == 2
    with safe_open(str(result.path / "adapter_model.safetensors"), "pt") as weights:
        dtypes = {str(weights.get_tensor(name).dtype) for name in weights.keys()}
    assert dtypes == {"torch.float32"}
    assert str(result.model.dtype) == "torch.bfloat16"
    assert result.record["changed_modules"], "two bf16 steps must still move the adapter"
