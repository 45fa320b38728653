"""The reference model of a stage >= 2: the vanilla weights with the stage's adapter switched off and the earlier
stages' masks still on (:class:`icu_unlearn.methods.base.StepContext`, ``IcuTrainer.reference_logits``).

Stage 1 is MANU (it writes masks), stage 2 is NPO (it reads the reference every step), both on the untrained
tiny model: what is checked is which weights the reference runs, not what anyone learns. The logits the method
received as reference are compared with an independent model: the base model loaded afresh, stage 1's masks
applied by hand, no adapter.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from icu_unlearn.methods import build_method
from icu_unlearn.methods.base import forward_logits
from icu_unlearn.methods.npo import NPO


class RecordingNPO(NPO):
    """NPO that keeps every forget batch it was given and the reference logits it received for it."""

    seen: list[tuple[dict[str, Any], torch.Tensor]]

    def forget_loss(self, model, forget, ctx):
        reference = ctx.reference_logits(forget)
        batch = {k: v.detach().clone() for k, v in forget.items() if isinstance(v, torch.Tensor)}
        self.seen.append((batch, reference.detach().clone()))
        return super().forget_loss(model, forget, ctx)


@pytest.fixture(scope="module")
def two_stages(tmp_path_factory, tiny_model_dir, small_data_dir):
    """MANU stage 1 (masks) then a recording NPO stage 2 of 3 steps; returns (stage 1 dir, stage 2 result,
    the recording method)."""
    from icu_unlearn.training.unlearn import run_stage

    run = tmp_path_factory.mktemp("reference_run")
    manu = build_method("manu", prune_fraction=0.3, last_layers=4)
    stage1 = run_stage(manu, tiny_model_dir, small_data_dir, 1, run, device="cpu")
    npo = RecordingNPO(build_method("npo", learning_rate=1e-2, max_steps=3, lr_scheduler="constant").config)
    npo.seen = []
    stage2 = run_stage(npo, tiny_model_dir, small_data_dir, 2, run, device="cpu")
    return stage1.path, stage2, npo


def _masked_base(tiny_model_dir, stage_dir=None):
    """The base model loaded afresh, with ``stage_dir``'s masks applied by hand (none without a dir)."""
    from icu_unlearn.models import apply_masks, load_base, read_masks

    model, _ = load_base(tiny_model_dir, device="cpu")
    model.eval()
    if stage_dir is not None:
        masks = read_masks(stage_dir)
        assert masks, "stage 1 (MANU) must have written masks"
        apply_masks(model, masks)
    return model


def test_reference_is_the_base_with_earlier_masks_and_no_adapter(two_stages, tiny_model_dir):
    stage1, stage2, npo = two_stages
    assert stage2.record["steps"] == 3 and len(npo.seen) >= 3
    masked = _masked_base(tiny_model_dir, stage1)
    plain = _masked_base(tiny_model_dir)
    with torch.no_grad():
        for batch, reference in npo.seen:
            expected = forward_logits(masked, batch)
            torch.testing.assert_close(reference, expected, rtol=1e-4, atol=1e-5)
        batch, reference = npo.seen[-1]
        unmasked_gap = (forward_logits(plain, batch) - reference).abs().max().item()
    assert unmasked_gap > 1e-3, f"stage 1's masks change nothing the test could see ({unmasked_gap:.1e})"


def test_trained_model_differs_from_its_reference(two_stages):
    """After stage 2's steps the model (adapter on) is not its reference: the adapter really was switched off."""
    _, stage2, npo = two_stages
    batch, reference = npo.seen[-1]
    with torch.no_grad():
        gap = (forward_logits(stage2.model, batch) - reference).abs().max().item()
    assert gap > 1e-3, f"the stage-2 model equals its reference ({gap:.1e}): the adapter never trained"
