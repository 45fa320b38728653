"""Method composition, batches and configs on the *untrained* tiny model (fast; no fine-tune needed).

* The composed losses (forget term + retain term, :class:`~icu_unlearn.methods.base.RetainMethod`) equal the
  formulas each method had before the split, written out here from :mod:`icu_unlearn.methods.losses`, on one real
  batch of the small data set through a real PEFT model whose adapter is non-zero (so reference ≠ model).
* :class:`~icu_unlearn.training.data.StepBatches`: sizes, whole-task batches, seeded passes.
* Config validation, per-method ``--help``, and a stage's record of its schedule and batch settings.
"""

from __future__ import annotations

import json

import pytest
import torch

from icu_tasks.errors import ConfigError
from icu_unlearn.methods import StepContext, build_method, losses


@pytest.fixture(scope="module")
def lora_batch(tiny_model_dir, small_data_dir):
    """A PEFT model with a random (non-zero) LoRA adapter, a forget and a retain batch, and the step context."""
    from peft import LoraConfig, get_peft_model

    from icu_tasks.data.dataset import open_data
    from icu_unlearn.methods.config import LM_LORA_TARGETS
    from icu_unlearn.models import load_base
    from icu_unlearn.training.data import Collator, examples_from_rows

    base, processor = load_base(tiny_model_dir, device="cpu")
    torch.manual_seed(0)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=LM_LORA_TARGETS, init_lora_weights=False)
    model = get_peft_model(base, cfg).eval()
    data = open_data(small_data_dir)
    collator = Collator(processor)
    forget = collator.encode(examples_from_rows(data, data.forget(1)[:2] + data.forget(1, view="qa")[:2]))
    retain = collator.encode(examples_from_rows(data, data.retain("train")[:4]))

    def reference_logits(inputs):
        with torch.no_grad(), model.disable_adapter():
            return _logits(model, inputs)

    return model, {"forget": forget, "retain": retain}, reference_logits


def _logits(model, inputs):
    return model(**{k: v for k, v in inputs.items() if k != "labels"}).logits


def _old_formula(name, model, batch, ref, cfg, step):
    """The loss as each method computed it before the forget/retain split (the formulas of its docstring)."""
    f, r = batch["forget"], batch["retain"]
    ga = losses.ga_loss(_logits(model, f), f["labels"])

    def npo():
        logp = losses.sequence_log_probs(_logits(model, f), f["labels"])
        return losses.npo_loss(logp, losses.sequence_log_probs(ref(f), f["labels"]), cfg.beta)

    def retain_nll():
        return cfg.retain_weight * losses.nll_loss(_logits(model, r), r["labels"])

    if name == "ga":
        return ga
    if name == "npo":
        return npo()
    if name == "ga_diff":
        return ga + retain_nll()
    if name == "npo_diff":
        return npo() + retain_nll()
    if name == "kl_min":
        kl = losses.kl_to_reference(_logits(model, r), ref(r), r.get("attention_mask"))
        return ga + retain_nll() + cfg.kl_weight * kl
    if name == "mmunlearner":
        return ga if step % 2 == 0 else retain_nll()
    raise AssertionError(name)


CASES = [
    ("ga", {}, 0),
    ("npo", {"beta": 0.7}, 0),
    ("ga_diff", {"retain_weight": 2.0}, 0),
    ("npo_diff", {"retain_weight": 3.0, "beta": 0.5}, 0),
    ("kl_min", {"retain_weight": 3.0, "kl_weight": 0.5}, 0),
    ("mmunlearner", {"retain_weight": 2.0}, 0),
    ("mmunlearner", {"retain_weight": 2.0}, 1),
]


@pytest.mark.parametrize(("name", "values", "step"), CASES)
def test_composed_loss_equals_the_old_formula(lora_batch, name, values, step):
    model, batch, ref = lora_batch
    method = build_method(name, **values)
    with torch.no_grad():
        got = method.compute_loss(model, batch, StepContext(step=step, reference_logits=ref))
        want = _old_formula(name, model, batch, ref, method.config, step)
    assert got.item() == pytest.approx(want.item(), rel=1e-6, abs=1e-6)
    assert abs(want.item()) > 1e-3  # a real value, not a vanishing term


def test_composed_gradients_equal_the_old_formula(lora_batch):
    """KL-Min, the most composed method: same gradient on every adapter weight, not only the same value."""
    model, batch, ref = lora_batch
    method = build_method("kl_min", retain_weight=3.0, kl_weight=0.5)
    params = [p for p in model.parameters() if p.requires_grad]
    ctx = StepContext(step=0, reference_logits=ref)
    got = torch.autograd.grad(method.compute_loss(model, batch, ctx), params)
    want = torch.autograd.grad(_old_formula("kl_min", model, batch, ref, method.config, 0), params)
    for g, w in zip(got, want, strict=True):
        # float32: the old formula ran the retain batch twice and summed the terms in another order; the
        # differences measured are <= 3.1e-7 absolute, so allow 1e-5 of the largest gradient entry
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5 * float(w.abs().max()) + 1e-9)


def test_zero_retain_weight_skips_the_retain_pass(lora_batch):
    model, batch, ref = lora_batch
    calls = []
    hook = model.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        with torch.no_grad():
            build_method("ga_diff", retain_weight=0.0).compute_loss(model, batch, StepContext(0, ref))
    finally:
        hook.remove()
    assert len(calls) == 1  # the forget pass only


# ----------------------------------------------------------------------------------------------- batches


def _examples(n, tag):
    from icu_unlearn.training.data import Example

    return [Example(f"{tag}{i}", "q", "a", None, "qa", tag, 1) for i in range(n)]


def test_step_batches_whole_task_and_sizes():
    from icu_unlearn.training.data import StepBatches

    forget, retain = _examples(6, "f"), _examples(10, "r")
    whole = StepBatches(forget, retain, 0, 3, length=4, seed=0)
    assert len(whole) == 4
    items = [whole[i] for i in range(4)]
    for item in items:
        assert sorted(e.id for e in item["forget"]) == sorted(e.id for e in forget)
        assert len(item["retain"]) == 3
    assert len({tuple(e.id for e in it["forget"]) for it in items}) > 1, "each pass is reshuffled"
    # retain: 4 items x 3 = 12 positions = one full pass over the 10 rows, then 2 of the next
    seen = [e.id for it in items for e in it["retain"]]
    assert sorted(seen[:10]) == sorted(e.id for e in retain)
    assert [e.id for e in StepBatches(forget, retain, 0, 3, 4, seed=0)[2]["retain"]] == [
        e.id for e in items[2]["retain"]
    ]
    assert StepBatches(forget, None, 4, 0, 2)[1]["retain"] is None
    with pytest.raises(IndexError):
        whole[4]


def test_step_batches_from_a_config():
    from icu_unlearn.training.data import Collator, StageData, step_batches

    data = StageData(_examples(6, "f"), _examples(10, "r"), Collator(None))
    cfg = build_method("ga_diff", batch_size=0, retain_batch_size=4, max_steps=3).config
    batches = step_batches(data, cfg, uses_retain=True)
    assert len(batches) == 3 and len(batches[0]["forget"]) == 6 and len(batches[0]["retain"]) == 4
    cfg = build_method("ga_diff", batch_size=2, max_steps=5, gradient_accumulation_steps=2).config
    batches = step_batches(data, cfg, uses_retain=True)
    assert len(batches) == 10 and len(batches[0]["forget"]) == 2 and len(batches[0]["retain"]) == 2
    assert step_batches(data, cfg, uses_retain=False)[0]["retain"] is None


# ----------------------------------------------------------------------------------------------- configs


@pytest.mark.parametrize(
    ("method", "values", "message"),
    [
        ("ga", {"batch_size": -1}, "batch_size must be >= 0"),
        ("ga_diff", {"retain_batch_size": -2}, "retain_batch_size must be >= 0"),
        ("npo", {"warmup_steps": 50, "max_steps": 50}, r"warmup_steps \(50\) must be < max_steps \(50\)"),
        ("ga", {"lr_scheduler": "cosine_restarts"}, "unknown lr_scheduler"),
        ("ga", {"lr_scheduler": "constant", "warmup_steps": 5}, "use constant_with_warmup"),
        ("ga", {"lora_alpha": 0}, "lora_alpha must be > 0"),
        ("manu", {"learning_rate": 1e-3}, "no hyper-parameter 'learning_rate': the method is training-free"),
        ("manu", {"lora_r": 4}, "has no hyper-parameter 'lora_r'"),
        ("mmunlearner", {"retain_weight": 0.0}, "retain_weight must be > 0"),
    ],
)
def test_config_checks(method, values, message):
    with pytest.raises(ConfigError, match=message):
        build_method(method, **values)


def test_training_flag_with_manu_is_one_clear_error(capsys):
    from icu_unlearn.cli import main

    argv = ["unlearn", "--method", "manu", "--lr", "1e-3", "--base", "b", "--data", "d", "--stage", "1"]
    assert main([*argv, "--out", "o"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --learning-rate does not apply to training-free method 'manu'")
    assert len(err.splitlines()) == 1 and "--prune-fraction" in err


def test_stage_records_schedule_and_batches(tiny_model_dir, small_data_dir, tmp_path):
    from icu_unlearn.training.unlearn import run_stage

    values = {"max_steps": 4, "batch_size": 0, "retain_batch_size": 3, "lr_scheduler": "cosine"}
    values |= {"warmup_steps": 1, "lora_r": 2, "lora_alpha": 8.0, "learning_rate": 1e-3}
    result = run_stage(
        build_method("ga_diff", **values), tiny_model_dir, small_data_dir, 1, tmp_path, device="cpu"
    )
    record = json.loads((result.path / "stage.json").read_text())
    assert {k: record["config"][k] for k in values} == values
    assert record["adapter"]["r"] == 2 and record["adapter"]["lora_alpha"] == 8.0
    assert record["steps"] == 4
    # the rate of each step: 1 warm-up step from 0, then cosine over the 3 others, 1e-3 * (1 + cos(pi*j/3)) / 2
    rates = [h["learning_rate"] for h in record["log_history"] if "learning_rate" in h]
    assert rates == pytest.approx([0.0, 1e-3, 0.75e-3, 0.25e-3], abs=1e-12)
