"""The training collation's per-row memo (:mod:`icu_unlearn.training.row_encodings`) gives the batch ``encode`` gives."""

from __future__ import annotations

import random

import torch
from PIL import Image

from icu_unlearn.models.loading import load_base
from icu_unlearn.training.data import Collator, Example, finetune_examples
from icu_unlearn.training.row_encodings import RowEncodings, encode_examples


def _assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key, tensor in want.items():
        assert got[key].dtype == tensor.dtype and torch.equal(got[key], tensor), key


def test_memo_batches_equal_direct_encoding_tiny_llava(tiny_model_dir, small_data_dir):
    """Mixed image / text batches, each row seen again in another batch (the memo's hit path)."""
    from icu_tasks.data.dataset import open_data

    _, processor = load_base(tiny_model_dir, "cpu", "float32")
    examples = finetune_examples(open_data(small_data_dir))
    random.Random(0).shuffle(examples)
    collator = Collator(processor)
    for batch in (examples[:24], examples[12:40], examples[:1], [e for e in examples if e.image is None][:5]):
        _assert_same(collator.encode(batch), encode_examples(processor, batch))
    assert collator._memo is not None and len(collator._memo._rows) == 40


def test_memo_batches_equal_direct_encoding_qwen2vl(tmp_path):
    """Qwen2-VL: pixel patches and ``image_grid_thw`` concatenated per image, images of different sizes."""
    from icu_unlearn.models.tiny_qwen2vl import build_tiny_qwen2vl

    _, processor = load_base(build_tiny_qwen2vl(tmp_path / "qwen", seed=0), "cpu", "float32")
    for i, size in enumerate(((256, 320), (320, 256))):
        Image.new("RGB", size, (40 * i, 200, 30)).save(tmp_path / f"p{i}.png")
    examples = [
        Example(str(i), q, a, tmp_path / f"p{i % 2}.png" if i < 3 else None, "vqa" if i < 3 else "qa", "x", 0)
        for i, (q, a) in enumerate(
            [("Who is this?", "Ana"), ("Where?", "Oak Street 3"), ("ID?", "ID-1"), ("Salary?", "3,000")]
        )
    ]
    collator = Collator(processor)
    for batch in (examples, examples[::-1], examples[2:]):
        _assert_same(collator.encode(batch), encode_examples(processor, batch))
    assert collator._memo is not None


def test_memo_keeps_to_its_budget(tiny_model_dir, small_data_dir):
    from icu_tasks.data.dataset import open_data

    _, processor = load_base(tiny_model_dir, "cpu", "float32")
    examples = [e for e in finetune_examples(open_data(small_data_dir)) if e.image is not None][:6]
    one_row = sum(t.nbytes for t in RowEncodings(processor).row(examples[0]).values())
    memo = RowEncodings(processor, max_bytes=int(2.5 * one_row))
    batch = memo.collate([memo.row(e) for e in examples])
    _assert_same(batch, encode_examples(processor, examples))
    assert len(memo._rows) == 2 and memo._bytes <= memo.max_bytes
    assert list(memo._rows) == examples[-2:]  # least recently used rows went first


def test_tensors_that_do_not_concatenate_give_none():
    """Per-image tensors padded per batch (LLaVA-NeXT's patch lists) cannot be assembled row by row."""

    class Tok:
        pad_token_id = 0

    rows = [
        {"input_ids": torch.ones(1, n, dtype=torch.long), "pixel_values": torch.zeros(1, p, 3, 8, 8)}
        for n, p in ((4, 2), (5, 3))
    ]
    assert RowEncodings(Tok()).collate(rows) is None
    same = [{**r, "pixel_values": torch.zeros(1, 2, 3, 8, 8)} for r in rows]
    batch = RowEncodings(Tok()).collate(same)
    assert batch["input_ids"].tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    assert batch["pixel_values"].shape == (2, 2, 3, 8, 8)


def test_no_pad_token_gives_none():
    class Tok:
        pad_token_id = None

    assert RowEncodings(Tok()).collate([{"input_ids": torch.ones(1, 3, dtype=torch.long)}]) is None
