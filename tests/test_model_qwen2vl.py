"""Architecture-generic: a tiny random Qwen2-VL goes through the same loading, prompting and inference code."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from PIL import Image

from icu_unlearn.models.encoding import IGNORE_INDEX, encode
from icu_unlearn.models.inference import generate_texts, loglikelihoods
from icu_unlearn.models.loading import load_base
from icu_unlearn.models.tiny_qwen2vl import build_tiny_qwen2vl
from icu_unlearn.scoring.icu_hf import IcuHF
from tests.fixtures_model import make_random_adapter

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    return build_tiny_qwen2vl(tmp_path_factory.mktemp("qwen2vl") / "tiny_qwen2vl", seed=0)


@pytest.fixture(scope="module")
def batch_inputs():
    pages = [Image.new("RGB", (256, 320), c) for c in ((200, 30, 30), (30, 200, 30))]
    questions = [
        "Who is in this document?",
        "Where does Ana Silva live?",
        "What is the ID number?",
        "Salary?",
    ]
    return questions, [pages[0], None, pages[1], None]


@pytest.mark.skipif(HAS_TORCHVISION, reason="documents the torchvision-less failure only")
def test_stock_auto_processor_needs_torchvision(qwen_dir):
    from transformers import AutoProcessor

    with pytest.raises(ImportError, match="[Tt]orchvision"):
        AutoProcessor.from_pretrained(qwen_dir)


def test_loads_and_encodes_with_qwen_template(qwen_dir, batch_inputs):
    model, processor = load_base(qwen_dir, "cpu", "float32")
    assert type(model).__name__ == "Qwen2VLForConditionalGeneration"
    assert type(processor.image_processor).__name__ == "Qwen2VLImageProcessorPil"
    questions, images = batch_inputs
    batch = encode(processor, questions, images, ["Ana", "Oak Street 3", "ID-1", "3,000"])
    assert batch["image_grid_thw"].shape == (2, 3)  # two images in the batch, one grid each
    tok = processor.tokenizer
    end = tok.convert_tokens_to_ids("<|im_end|>")
    for i, answer in enumerate(["Ana", "Oak Street 3", "ID-1", "3,000"]):
        labelled = batch["labels"][i][batch["labels"][i] != IGNORE_INDEX].tolist()
        assert labelled[-1] == end and tok.decode(labelled[:-1]) == answer


def test_batching_is_invariant(qwen_dir, batch_inputs):
    model, processor = load_base(qwen_dir, "cpu", "float32")
    questions, images = batch_inputs
    one = generate_texts(model, processor, questions, images, max_new_tokens=8, batch_size=1)
    four = generate_texts(model, processor, questions, images, max_new_tokens=8, batch_size=4)
    assert one == four
    conts = ["Ana", "Oak Street", "ID", "many"]
    single = loglikelihoods(model, processor, questions, conts, images, batch_size=1)
    batched = loglikelihoods(model, processor, questions, conts, images, batch_size=4)
    assert [s for s, _ in batched] == pytest.approx([s for s, _ in single], abs=1e-4)


def test_icu_hf_with_adapter(qwen_dir, batch_inputs, tmp_path):
    stage = make_random_adapter(qwen_dir, tmp_path / "stage_1")
    questions, images = batch_inputs
    lm = IcuHF(pretrained=str(qwen_dir), adapter=str(stage), batch_size=4)
    wrapped = lm.model.get_base_model().get_submodule("model.language_model.layers.0.self_attn.q_proj")
    assert hasattr(wrapped, "lora_A")
    with_adapter = generate_texts(lm.model, lm.processor, questions, images, 8, 4)
    lm.load_adapter(None)
    assert not any("lora" in n for n, _ in lm.model.named_parameters())
    base = generate_texts(lm.model, lm.processor, questions, images, 8, 4)
    assert with_adapter != base
    assert torch.is_floating_point(next(lm.model.parameters()))
