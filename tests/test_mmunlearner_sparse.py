"""MMUnlearner at the weight level on the *untrained* tiny model (fast): Fisher saliency on the base weights,
updates restricted to salient entries, a SHiRA stage checkpoint that reloads with PEFT and accumulates.

Whether MMUnlearner *forgets* is measured on the fine-tuned model in ``tests/test_methods.py`` (slow).
"""

from __future__ import annotations

import json

import pytest
import torch

from icu_unlearn.methods import build_method

#: Small, fast stages: 2 Fisher batches per set, a sparse budget of 2 * (m + n) entries per weight.
FAST = {"shira_r": 2, "fisher_batches": 2, "learning_rate": 1e-2, "lr_scheduler": "constant"}


def _stage(tiny_model_dir, small_data_dir, run, k, **values):
    from icu_unlearn.training.unlearn import run_stage

    method = build_method("mmunlearner", **{**FAST, **values})
    return run_stage(method, tiny_model_dir, small_data_dir, k, run, device="cpu")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("mmunlearner_run")


@pytest.fixture(scope="module")
def stage1(tiny_model_dir, small_data_dir, run_dir):
    """One forget step only (step 0 is a forget step), so every change is a masked forget update. A budget of
    48 * (m + n) entries (28-38 % of each weight) above the share with Fisher ratio >= 2 puts non-salient
    entries into the adapter, which the forget step must leave alone."""
    return _stage(tiny_model_dir, small_data_dir, run_dir, 1, max_steps=1, shira_r=48, gamma=2.0)


def test_saliency_is_weight_level(tiny_model_dir, small_data_dir):
    """The forget Fisher on the base weights is non-zero and varies inside rows (not a row-level projection)."""
    from icu_tasks.data.dataset import open_data
    from icu_unlearn.methods import saliency
    from icu_unlearn.methods.config import LM_LORA_TARGETS
    from icu_unlearn.models import load_base
    from icu_unlearn.training.data import stage_data

    model, processor = load_base(tiny_model_dir, device="cpu")
    sd = stage_data(open_data(small_data_dir), [1], processor)
    linears = saliency.target_linears(model, LM_LORA_TARGETS)
    assert len(linears) == model.config.text_config.num_hidden_layers * 7  # layers x q/k/v/o/gate/up/down
    fisher = saliency.diagonal_fisher(model, linears, sd.forget, sd.collate, 8, max_batches=2)
    for name, f in fisher.items():
        assert f.shape == linears[name].weight.shape
        assert float((f > 0).float().mean()) > 0.5, name
        per_row_spread = f.max(dim=1).values - f.min(dim=1).values
        assert bool((per_row_spread > 0).all()), f"{name}: some row of the Fisher is constant"
    assert all(not p.requires_grad or p.grad is None for p in model.parameters())


def test_only_salient_entries_move(stage1, tiny_model_dir):
    from safetensors.torch import load_file

    from icu_unlearn.models import load_base

    record = stage1.record
    assert record["adapter"]["type"] == "SHIRA" and record["adapter"]["r"] == 48
    info = record["method_info"]
    assert 0 < info["salient_fraction"] < 1
    assert 0 < info["salient_adapter_entries"] < info["adapter_entries"], info
    mask = load_file(str(stage1.path / "saliency.safetensors"))
    params = dict(stage1.model.named_parameters())
    assert set(mask) == {n for n in params if ".shira_weight." in n}
    moved = salient_moved = 0
    for name, m in mask.items():
        changed = params[name].detach() != 0  # the adapter started at 0: one forget step moved these
        assert not bool((changed & (m == 0)).any()), f"{name}: a non-salient entry moved in a forget step"
        moved += int(changed.sum())
        salient_moved += int((changed & (m == 1)).sum())
    assert moved > 0 and moved == salient_moved
    # the base weights are the vanilla ones: the update is only in the adapter
    vanilla, _ = load_base(tiny_model_dir, device="cpu")
    base = stage1.model.get_base_model()
    for name, p in vanilla.named_parameters():
        torch.testing.assert_close(base.get_parameter(name), p, rtol=0, atol=0)


def _logits(model, inputs):
    with torch.no_grad():
        return model(**{k: v for k, v in inputs.items() if k != "labels"}).logits


def _probe(processor, data_dir):
    from icu_tasks.data.dataset import open_data
    from icu_unlearn.training.data import Collator, examples_from_rows

    data = open_data(data_dir)
    return Collator(processor).encode(examples_from_rows(data, data.forget(1)[:2] + data.retain("eval")[:2]))


def _reload(base_dir, stage_dir):
    from peft import PeftModel

    from icu_unlearn.models import load_base

    base, processor = load_base(base_dir, device="cpu")
    return PeftModel.from_pretrained(base, str(stage_dir)).eval(), processor


def test_checkpoint_reloads_with_peft(stage1, tiny_model_dir, small_data_dir):
    reloaded, processor = _reload(tiny_model_dir, stage1.path)
    inputs = _probe(processor, small_data_dir)
    got, want = _logits(reloaded, inputs), _logits(stage1.model, inputs)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    vanilla, _ = _reload_base(tiny_model_dir)
    assert not torch.allclose(_logits(vanilla, inputs), want), "the stage changed nothing"


def _reload_base(base_dir):
    from icu_unlearn.models import load_base

    return load_base(base_dir, device="cpu")


def test_stage2_accumulates(stage1, tiny_model_dir, small_data_dir, run_dir):
    from safetensors.torch import load_file

    s2 = _stage(tiny_model_dir, small_data_dir, run_dir, 2, max_steps=2)
    assert s2.record["adapter"]["r"] == 48 + FAST["shira_r"]
    w1, w2 = (
        load_file(str(stage1.path / "adapter_model.safetensors")),
        load_file(str(s2.path / "adapter_model.safetensors")),
    )
    idx = [k for k in w1 if k.endswith("shira_indices")]
    assert idx and set(w1) == set(w2)
    for key in idx:
        one = {tuple(c) for c in w1[key].T.tolist()}
        two = {tuple(c) for c in w2[key].T.tolist()}
        assert one <= two and len(two) == len(one) * (48 + FAST["shira_r"]) // 48, key
    reloaded, processor = _reload(tiny_model_dir, s2.path)
    inputs = _probe(processor, small_data_dir)
    torch.testing.assert_close(_logits(reloaded, inputs), _logits(s2.model, inputs), rtol=1e-5, atol=1e-5)
    record = json.loads((s2.path / "stage.json").read_text())
    assert record["method_info"]["retain_steps_per_forget"] >= 1


def test_parent_of_another_adapter_type_is_refused(tiny_model_dir, small_data_dir, tmp_path):
    from icu_tasks.errors import StageError
    from icu_unlearn.training.unlearn import run_stage

    run_stage(
        build_method("ga", max_steps=1, batch_size=2),
        tiny_model_dir,
        small_data_dir,
        1,
        tmp_path,
        device="cpu",
    )
    with pytest.raises(StageError, match="continues only its own stages"):
        _stage(tiny_model_dir, small_data_dir, tmp_path, 2, max_steps=1)
