"""The vanilla fine-tune: it memorises the small set, writes a reloadable model dir, is seeded, refuses bad input.

The session fixture (``tests/fixtures_unlearn.FIXTURE_FINETUNE``) trains with the stopping rule on: every split x
view group must reach ``STOP_AT`` teacher-forced exact match; the tests here check that the rule really ran and
held, that teacher-forced scoring agrees with greedy generation, and that a cap reached first is a clear error.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from icu_tasks.errors import ConfigError, StageError
from icu_unlearn.cli import main
from icu_unlearn.training.finetune import FinetuneConfig, finetune
from tests.fixtures_unlearn import STOP_AT

#: A few-step run for the properties that do not need memorisation (seeding, LoRA merge, guards).
SHORT = {"max_steps": 2, "batch_size": 8}


#: Teacher-forced and greedy exact match may disagree only where the metric's normalisation (case,
#: punctuation, whitespace) accepts an answer whose tokens differ from the gold ones.
MAX_DISAGREEMENT = 0.05


@pytest.mark.slow
def test_stopping_rule_held_on_every_group(vanilla_model_dir):
    record = json.loads((vanilla_model_dir / "finetune.json").read_text())
    stop = record["stopping"]
    assert stop["target"] == STOP_AT and stop["reached_step"] == record["steps"]
    assert record["steps"] < record["config"]["max_steps"], "the rule, not the cap, ended training"
    groups = {f"{s}/{v}" for s in ("forget", "retain_train", "retain_eval", "utility") for v in ("vqa", "qa")}
    assert set(stop["final_scores"]) <= groups and {"forget/vqa", "forget/qa"} <= set(stop["final_scores"])
    assert min(stop["final_scores"].values()) >= STOP_AT, stop["final_scores"]
    steps = [c["step"] for c in stop["checks"]]
    assert steps == sorted(steps) and all(s % record["config"]["check_every"] == 0 for s in steps)
    assert all(min(c["scores"].values()) < STOP_AT for c in stop["checks"][:-1]), "it stopped late"


@pytest.mark.slow
def test_teacher_forced_agrees_with_greedy_generation(vanilla_model_dir, small_data_dir):
    """The one-forward-pass score the fixture and the method tests use agrees with what lmms-eval scores."""
    from icu_tasks.data.dataset import open_data
    from icu_tasks.harness.answer_metrics import exact_match
    from icu_unlearn.models import load_base
    from icu_unlearn.models.inference import generate_texts
    from icu_unlearn.training.data import Collator, examples_from_rows
    from icu_unlearn.training.knowledge import answer_scores
    from icu_unlearn.training.row_encodings import load_image

    model, processor = load_base(vanilla_model_dir, device="cpu")
    data = open_data(small_data_dir)
    examples = examples_from_rows(data, data.forget([1, 2]) + data.retain("eval"))
    forced = [s.correct for s in answer_scores(model, Collator(processor), examples)]
    answers = generate_texts(
        model,
        processor,
        [e.question for e in examples],
        [load_image(e.image) for e in examples],
        until=["\n"],
    )
    greedy = [bool(exact_match(a, e.answer)) for a, e in zip(answers, examples, strict=True)]
    assert all(g for f, g in zip(forced, greedy, strict=True) if f), "teacher-forced right but greedy wrong"
    assert 0 < sum(forced) and sum(
        f != g for f, g in zip(forced, greedy, strict=True)
    ) <= MAX_DISAGREEMENT * len(examples)


def test_cap_reached_before_the_rule_is_an_error(tiny_model_dir, small_data_dir, tmp_path):
    from icu_tasks.errors import TrainingError

    cfg = FinetuneConfig(**SHORT, stop_at_accuracy=0.9, check_every=1)
    with pytest.raises(TrainingError, match=r"did not learn.*forget/vqa 0\.\d\d.*below the target 0\.9"):
        finetune(tiny_model_dir, small_data_dir, tmp_path / "x", cfg, device="cpu")
    assert not (tmp_path / "x").exists() and not list(tmp_path.iterdir())


@pytest.mark.slow
def test_vanilla_dir_is_a_plain_reloadable_model(vanilla_model_dir, tiny_model_dir, small_data_dir):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText, AutoProcessor

    files = {p.name for p in vanilla_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "finetune.json"} <= files
    assert not any(f.endswith(".bin") for f in files)
    AutoProcessor.from_pretrained(vanilla_model_dir)
    AutoModelForImageTextToText.from_pretrained(vanilla_model_dir)
    record = json.loads((vanilla_model_dir / "finetune.json").read_text())
    manifest = json.loads((small_data_dir / "manifest.json").read_text())
    assert record["data_hash"] == manifest["data_hash"] and record["config"]["mode"] == "full"
    by_split = manifest["counts"]["longform_rows_by_split"]
    n_longform = by_split["forget"] + by_split["retain_train"] + by_split["retain_eval"]  # 14: not holdout
    longform = record["config"].get("longform", False)  # the fixture's choice (FIXTURE_FINETUNE)
    trained = ("forget", "retain_train", "retain_eval", "utility")  # every split but holdout (never trained)
    n_core = sum(manifest["counts"]["rows_by_split"][s] for s in trained)  # 260 of the 324 core rows
    assert record["rows"] == n_core + (n_longform if longform else 0)
    n_image = sum(1 for r in _qa_rows(small_data_dir) if r["image"] and r["split"] in trained)
    assert record["examples_per_epoch"] == record["rows"] + (record["config"]["vqa_repeat"] - 1) * n_image
    before, after = (
        load_file(str(tiny_model_dir / "model.safetensors")),
        load_file(str(vanilla_model_dir / "model.safetensors")),
    )
    vision = [k for k in before if "vision_tower" in k]
    assert vision and any(not torch.equal(before[k], after[k]) for k in vision), (
        "the full fine-tune trains vision too"
    )


def _qa_rows(data_dir: Path) -> list[dict]:
    import pyarrow.parquet as pq

    from icu_tasks.data.schema import QA_FILE

    return pq.read_table(data_dir / QA_FILE).to_pylist()


def _weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def test_finetune_is_seeded(tiny_model_dir, small_data_dir, tmp_path):
    import torch

    a = finetune(
        tiny_model_dir, small_data_dir, tmp_path / "a", FinetuneConfig(**SHORT, seed=3), device="cpu"
    )
    b = finetune(
        tiny_model_dir, small_data_dir, tmp_path / "b", FinetuneConfig(**SHORT, seed=3), device="cpu"
    )
    c = finetune(
        tiny_model_dir, small_data_dir, tmp_path / "c", FinetuneConfig(**SHORT, seed=4), device="cpu"
    )
    wa, wb, wc = _weights(a), _weights(b), _weights(c)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


def test_lora_mode_merges_into_the_language_model_only(tiny_model_dir, small_data_dir, tmp_path):
    import torch

    cfg = FinetuneConfig(mode="lora", learning_rate=1e-2, **SHORT)
    out = finetune(tiny_model_dir, small_data_dir, tmp_path / "lora", cfg, device="cpu")
    files = {p.name for p in out.iterdir()}
    assert "adapter_model.safetensors" not in files and "model.safetensors" in files
    before, after = _weights(tiny_model_dir), _weights(out)
    assert before.keys() == after.keys(), "merged weights keep the base layout (no lora_ keys)"
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("language_model" in k and "proj" in k for k in changed)


def test_lora_targets_that_match_nothing_fail_before_training(tiny_model_dir, small_data_dir, tmp_path):
    cfg = FinetuneConfig(mode="lora", lora_target_modules=r".*no_such_module$", **SHORT)
    with pytest.raises(ConfigError, match="matched no module"):
        finetune(tiny_model_dir, small_data_dir, tmp_path / "x", cfg, device="cpu")
    assert not (tmp_path / "x").exists()


def test_existing_output_is_not_overwritten(tiny_model_dir, small_data_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(StageError, match="--overwrite"):
        finetune(tiny_model_dir, small_data_dir, out, FinetuneConfig(**SHORT), device="cpu")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mode": "qlora"}, "mode must be 'full' or 'lora'"),
        ({"learning_rate": -1.0}, "learning_rate must be > 0"),
        ({"batch_size": 0}, "batch_size must be > 0"),
        ({"vision_weight_decay": -0.1}, "vision_weight_decay must be >= 0"),
        ({"lora_dropout": 1.5}, r"lora_dropout must be in \[0, 1\)"),
        ({"max_steps": "many"}, "max_steps"),
        ({"longform": "sometimes"}, "longform"),
    ],
)
def test_finetune_config_rejects_bad_values(values, message):
    with pytest.raises(ConfigError, match=message):
        FinetuneConfig(**values)


def test_finetune_config_reads_text_values():
    """``--finetune-set``/YAML values arrive as text; PyYAML reads ``3e-3`` as a string (YAML 1.1)."""
    from icu_unlearn.cli.args import parse_sets

    values = parse_sets(["learning_rate=3e-3", "max_steps=1e2", "longform=false", "lr_scheduler=cosine"])
    assert values["learning_rate"] == "3e-3"  # what the parser hands over
    config = FinetuneConfig(**values)
    assert (config.learning_rate, config.max_steps, config.longform) == (0.003, 100, False)
    assert isinstance(config.max_steps, int) and config.lr_scheduler == "cosine"


def test_cli_bad_input_is_one_line(tmp_path, capsys, tiny_model_dir, small_data_dir):
    status = main(
        [
            "finetune",
            "--model",
            str(tiny_model_dir),
            "--data",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ") and err.count("\n") == 1
    status = main(
        [
            "finetune",
            "--model",
            str(tmp_path / "nomodel"),
            "--data",
            str(small_data_dir),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert status == 2 and capsys.readouterr().err.startswith("error: model dir not found")
    status = main(
        [
            "finetune",
            "--model",
            str(tiny_model_dir),
            "--data",
            str(small_data_dir),
            "--out",
            str(tmp_path / "o"),
            "--steps",
            "0",
        ]
    )
    assert status == 2 and "max_steps must be > 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_vqa_repeat_lists_image_rows_that_many_times(small_data_dir):
    from collections import Counter

    from icu_tasks.data.dataset import open_data
    from icu_tasks.errors import DataError
    from icu_unlearn.training.data import finetune_examples

    data = open_data(small_data_dir)
    once, twice = finetune_examples(data), finetune_examples(data, vqa_repeat=2)
    n_image = sum(e.image is not None for e in once)
    assert 0 < n_image < len(once) and len(twice) == len(once) + n_image
    counts = Counter(e.id for e in twice)
    assert all(counts[e.id] == (2 if e.image is not None else 1) for e in once)
    with pytest.raises(DataError, match="vqa_repeat must be >= 1"):
        finetune_examples(data, vqa_repeat=0)
    with pytest.raises(ConfigError, match="vqa_repeat must be > 0"):
        FinetuneConfig(vqa_repeat=0)


def test_longform_rows_padded_apart_give_the_same_loss_and_gradient(tiny_model_dir, small_data_dir):
    """``Collator(split_longform=True)`` pads a batch's long-form rows apart; the loss and its gradient are
    those of the whole batch padded to one length (only the compute changes)."""
    import torch

    from icu_tasks.data.dataset import open_data
    from icu_tasks.data.schema import LONGFORM
    from icu_unlearn.methods.base import StepContext
    from icu_unlearn.models import load_base
    from icu_unlearn.training.data import Collator, finetune_examples
    from icu_unlearn.training.loop import NLLObjective

    examples = finetune_examples(open_data(small_data_dir), longform=True)
    batch = [e for e in examples if e.phrasing != LONGFORM][:6] + [
        e for e in examples if e.phrasing == LONGFORM
    ][:2]
    model, processor = load_base(tiny_model_dir, device="cpu")
    whole, parts = Collator(processor)(batch), Collator(processor, split_longform=True)(batch)
    assert len(parts["parts"]) == 2 and parts["parts"][1]["input_ids"].shape[0] == 2
    assert parts["parts"][0]["input_ids"].shape[1] < whole["input_ids"].shape[1]  # less padding
    ctx = StepContext(step=0, reference_logits=None)
    grads = []
    for inputs in (whole, parts):
        model.zero_grad()
        loss = NLLObjective().compute_loss(model, inputs, ctx)
        loss.backward()
        grads.append((loss.item(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    assert abs(grads[0][0] - grads[1][0]) < 1e-5, (grads[0][0], grads[1][0])
    assert len(grads[0][1]) == len(grads[1][1])
    assert all(
        torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(grads[0][1], grads[1][1], strict=True)
    )
    # no long-form row (or only long-form rows): the plain encoding, unchanged
    assert "parts" not in Collator(processor, split_longform=True)(batch[:6])
