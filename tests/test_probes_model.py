"""Robustness probes on the fine-tuned tiny model: quantized scoring, the relearning attack and its table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from icu_tasks.records import layout

#: Quantized vanilla vs full precision, greedy answers on forget task 1-3 + retain-eval (160 questions).
#: Measured on the fixture's vanilla: int8 1.000, int4 0.994, nf4 0.994 of the answers identical.
AGREEMENT = {"int8": 0.97, "int4": 0.9, "nf4": 0.9}
#: ... and the accuracy moves by at most this much (measured: 0.000, 0.006, 0.006).
ACCURACY_TOLERANCE = 0.05


def _questions(data_dir: Path) -> tuple[list, list, list[str]]:
    from icu_tasks.data.dataset import open_data
    from icu_unlearn.training.data import examples_from_rows, load_image

    data = open_data(data_dir)
    rows = [r for v in ("vqa", "qa") for r in data.forget([1, 2, 3], view=v) + data.retain("eval", view=v)]
    examples = examples_from_rows(data, rows)
    images = [load_image(e.image) if e.image else None for e in examples]
    return [e.question for e in examples], images, [e.answer for e in examples]


def _answers(lm, questions: list, images: list) -> list[str]:
    from icu_unlearn.models.inference import generate_texts

    return generate_texts(lm.model, lm.processor, questions, images, 16, 16)


@pytest.fixture(scope="module")
def full_precision(vanilla_model_dir: Path, small_data_dir: Path) -> tuple[list, list, list, list]:
    from icu_unlearn.scoring.evaluate import task_env
    from icu_unlearn.scoring.icu_hf import IcuHF

    questions, images, gold = _questions(small_data_dir)
    with task_env(small_data_dir):
        lm = IcuHF(pretrained=str(vanilla_model_dir), device="cpu")
    return questions, images, gold, _answers(lm, questions, images)


def _accuracy(answers: list[str], gold: list[str]) -> float:
    return sum(a.strip().lower() == g.strip().lower() for a, g in zip(answers, gold, strict=True)) / len(gold)


@pytest.mark.parametrize("scheme", ["int8", "int4", "nf4"])
def test_quantized_vanilla_answers_like_full_precision(
    scheme: str, vanilla_model_dir: Path, small_data_dir: Path, full_precision: tuple
) -> None:
    import torch

    from icu_unlearn.scoring.evaluate import task_env
    from icu_unlearn.scoring.icu_hf import IcuHF

    questions, images, gold, reference = full_precision
    with task_env(small_data_dir):
        lm = IcuHF(pretrained=str(vanilla_model_dir), device="cpu", quantize=scheme)
    linear = lm.model.get_submodule("model.language_model.layers.0.mlp.down_proj")
    assert type(linear.weight) is not torch.nn.Parameter and type(linear.weight) is not torch.Tensor
    assert type(lm.model.lm_head.weight) in (
        torch.nn.Parameter,
        torch.Tensor,
    )  # the head stays full precision
    answers = _answers(lm, questions, images)
    agreement = sum(a == b for a, b in zip(answers, reference, strict=True)) / len(reference)
    assert agreement >= AGREEMENT[scheme], agreement
    assert abs(_accuracy(answers, gold) - _accuracy(reference, gold)) <= ACCURACY_TOLERANCE


def test_bad_quantize_value_fails_before_loading(vanilla_model_dir: Path) -> None:
    from icu_tasks.errors import ConfigError
    from icu_unlearn.scoring.icu_hf import IcuHF

    with pytest.raises(ConfigError, match="quantize must be one of int8, int4, nf4"):
        IcuHF(pretrained=str(vanilla_model_dir), quantize="fp3")


def test_scratch_attack_starts_at_the_vanilla_model(vanilla_model_dir: Path, small_data_dir: Path) -> None:
    """The from-scratch control's fresh adapter changes nothing before its first step: it starts from the
    vanilla model, whose accuracy on holdout people is the base rate."""
    import torch

    from icu_tasks.data.dataset import open_data
    from icu_unlearn.models import load_base
    from icu_unlearn.pipeline.relearn import _attack_model
    from icu_unlearn.training.data import Collator, examples_from_rows

    data = open_data(small_data_dir)
    batch = Collator(load_base(vanilla_model_dir)[1]).encode(examples_from_rows(data, data.holdout()[:6]))
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    vanilla, _ = load_base(vanilla_model_dir)
    attacked, _ = _attack_model(vanilla_model_dir, None, "cpu")
    attacked.eval()
    with torch.no_grad():
        assert torch.equal(vanilla(**inputs).logits, attacked(**inputs).logits)


@pytest.fixture(scope="module")
def probed_run(
    tmp_path_factory: pytest.TempPathFactory, vanilla_model_dir: Path, small_data_dir: Path
) -> Path:
    """A one-stage NPO-Diff run with every probe of stage 1 trained and scored (int8 only)."""
    from icu_unlearn.methods import build_method
    from icu_unlearn.pipeline.probes import ProbeConfig, probe_stage
    from icu_unlearn.pipeline.relearn import RelearnConfig
    from icu_unlearn.training.unlearn import run_stage

    run = tmp_path_factory.mktemp("probes") / "run"
    method = build_method("npo_diff", max_steps=25, learning_rate=2e-3)
    run_stage(method, vanilla_model_dir, small_data_dir, 1, run, device="cpu")
    record = {"base": str(vanilla_model_dir), "data": str(small_data_dir), "stages": 1}
    (run / layout.RUN_JSON).write_text(json.dumps(record), encoding="utf-8")
    config = ProbeConfig(RelearnConfig(steps=10, learning_rate=2e-3), schemes=("int8",))
    probe_stage(run, 1, config, log=lambda _: None)
    return run


@pytest.mark.slow
def test_relearn_writes_a_scorable_stage_with_its_record(probed_run: Path, small_data_dir: Path) -> None:
    from icu_tasks.data.dataset import open_data

    attack = json.loads((layout.probe_dir(probed_run, 1, "relearn") / layout.STAGE_JSON).read_text())[
        "attack"
    ]
    assert attack["kind"] == "relearn" and attack["stage"] == 1 and attack["steps_run"] == 10
    people = {r["profile_id"] for r in open_data(small_data_dir).forget(1)}
    assert set(attack["exposed"]["1"]) | set(attack["unexposed"]["1"]) == people
    assert set(attack["exposed"]["1"]).isdisjoint(attack["unexposed"]["1"])
    for k, name in [
        (1, "relearn"),
        (1, "benign"),
        (1, "int8"),
        (1, "unlearned"),
        (0, "scratch"),
        (0, "int8"),
    ]:
        assert any(layout.probe_eval_dir(probed_run, k, name).rglob("*_results.json")), (k, name)


@pytest.mark.slow
def test_robustness_table_of_the_probed_run(probed_run: Path) -> None:
    from icu_tasks.report.robustness import profile_accuracy, robustness_table

    table = robustness_table(probed_run, n_boot=200)
    row = table["stages"][0]
    assert row["stage"] == 1 and len(row["unexposed"]) == 1
    assert row["accuracy"]["vanilla"] > row["accuracy"]["unlearned"]  # the stage forgot
    for probe in ("relearn", "benign", "int8"):
        est = row["recovery"][probe]
        assert est["note"] if est["value"] is None else 0.0 <= est["value"] <= 1.0, (probe, est)
    control = table["control"]
    vanilla = profile_accuracy(layout.probe_eval_dir(probed_run, 0, "vanilla"), "holdout")
    assert control["before"] == pytest.approx(sum(vanilla[p] for p in control["unexposed"]) / 2)
    assert len(control["unexposed"]) == 2  # 4 holdout people, 2 exposed
