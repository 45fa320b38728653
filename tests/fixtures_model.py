"""Session fixtures of the model layer: the tiny LLaVA model and a random-LoRA stage dir on top of it.

Both are built once per test session and must be treated as read-only (load them; never save over them).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.shared_build import built_once

#: LoRA targets of the test adapter: the language model's attention and MLP projections only (the CLIP tower
#: has q/k/v projections too, so a bare name list would adapt the vision side as well).
LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, small_data_dir: Path) -> Path:
    """The demo's tiny LLaVA model (random weights; ``DEMO_TINY``: two decoder layers), tokenizer trained on the
    small data set's text."""
    from icu_unlearn.cli.run import DEMO_TINY
    from icu_unlearn.models.tiny import TinyConfig, build_tiny_model, corpus_from_data

    def build(parent: Path) -> Path:
        config = TinyConfig(**DEMO_TINY)
        return build_tiny_model(parent / "tiny", corpus_from_data(small_data_dir), seed=0, config=config)

    return built_once(tmp_path_factory, "tiny_model", build)


def make_random_adapter(base_dir: Path, out_dir: Path, seed: int = 1, r: int = 4) -> Path:
    """Save a PEFT LoRA adapter with random, non-zero A and B (so it changes outputs) for ``base_dir``."""
    import torch
    from peft import LoraConfig, get_peft_model

    from icu_unlearn.models.loading import load_base

    model, _ = load_base(base_dir, "cpu", "float32")
    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=LORA_TARGETS, init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(out_dir, safe_serialization=True)
    return Path(out_dir)


@pytest.fixture(scope="session")
def tiny_adapter_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A stage dir holding a random LoRA adapter for :func:`tiny_model_dir` (no masks, no stage.json)."""
    return make_random_adapter(tiny_model_dir, tmp_path_factory.mktemp("tiny_stage") / "stage_1")
