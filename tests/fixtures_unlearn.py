"""Session fixtures of the unlearning layer: the fine-tuned (vanilla) tiny model and its stage-0 scores.

``vanilla_model_dir`` is the tiny model fine-tuned on the whole small data set, built ONCE per session (the
most expensive fixture of the suite); treat it as read-only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

#: Fine-tune of the fixture: the tiny-model recipe (full fine-tune, batch 64, LM lr 2e-3, vision/projector lr
#: 5e-4 with weight decay 0.1, linear decay, image rows 3x per epoch) on the 420 rows. Measured (2 cores,
#: ~6.5 min): forget task 1 VQA 0.50 / QA 1.00, retain-eval VQA 0.76 / QA 1.00.
FIXTURE_FINETUNE = {
    "max_steps": 700,
    "batch_size": 64,
    "vqa_repeat": 3,
    "lr_scheduler": "linear",  # what was measured for the suite (the default is now constant after warmup)
    "warmup_steps": 0,
    "seed": 0,
}
#: After the fixture fine-tune, the text (QA) view of forget task 1 and of retain-eval must reach
#: ``MIN_STAGE0_QA`` and the image (VQA) view ``MIN_STAGE0_VQA``: far above an untrained model (0.0 / 0.0) or a
#: half-trained one (QA ~0.1 at 18 epochs; VQA ~0.06 at 150 steps of image rows alone), and they leave the
#: unlearning tests a clear drop to measure in both views.
MIN_STAGE0_QA = 0.75
MIN_STAGE0_VQA = 0.35


@pytest.fixture(scope="session")
def vanilla_model_dir(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, small_data_dir: Path
) -> Path:
    """The tiny model fully fine-tuned on every QA row of the small data set (stage 0 of every test run)."""
    from icu_unlearn.train import FinetuneConfig, finetune

    out = tmp_path_factory.mktemp("vanilla") / "vanilla"
    return finetune(tiny_model_dir, small_data_dir, out, FinetuneConfig(**FIXTURE_FINETUNE), device="cpu")


def score_groups(model, processor, data_dir: Path, task: int = 1) -> dict[str, float]:
    """Exact-match accuracy on forget task ``task`` and on retain-eval: per view and both views pooled
    (keys ``forget``, ``forget_vqa``, ``forget_qa``, ``retain``, ``retain_vqa``, ``retain_qa``)."""
    from icu_tasks.dataset import open_data
    from icu_unlearn.data import examples_from_rows, quick_accuracy

    data = open_data(data_dir)
    out: dict[str, float] = {}
    for group, rows in (
        ("forget", lambda v: data.forget(task, view=v)),
        ("retain", lambda v: data.retain("eval", view=v)),
    ):
        sizes = {}
        for view in ("vqa", "qa"):
            examples = examples_from_rows(data, rows(view))
            out[f"{group}_{view}"] = quick_accuracy(model, processor, examples)
            sizes[view] = len(examples)
        out[group] = sum(out[f"{group}_{v}"] * n for v, n in sizes.items()) / sum(sizes.values())
    return out


@pytest.fixture(scope="session")
def stage0_scores(vanilla_model_dir: Path, small_data_dir: Path) -> dict[str, float]:
    """The vanilla model's accuracy on forget task 1 and on retain-eval (the reference of every drop)."""
    from icu_unlearn.models import load_base

    model, processor = load_base(vanilla_model_dir, device="cpu")
    return score_groups(model, processor, small_data_dir)
