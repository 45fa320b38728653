"""Teacher-forced batches assembled from a memo of per-row encodings.

Training sees the same rows every epoch in new batch compositions, and the processor's image preprocessing
(resize, rescale, normalise: a Python loop over PIL images with the slow processors this project uses on CPU)
is most of the collation cost. :class:`RowEncodings` encodes each :class:`~icu_unlearn.training.data.Example`
once (:func:`encode_examples`, a batch of one: nothing padded), keeps the tensors in a
byte-bounded LRU memo, and assembles a batch the way the processor itself would: sequence tensors (input ids,
attention mask, labels, token-type ids…) right-padded to the longest row, per-image tensors (pixel values,
``image_grid_thw``, ``image_sizes``…) concatenated in row order. The result is the batch
:func:`~icu_unlearn.models.encoding.encode` returns for the same rows with ``padding_side="right"`` (a test checks
this tensor for tensor on the tiny LLaVA and Qwen2-VL processors). A processor whose per-image tensors do not
concatenate (e.g. LLaVA-NeXT pads its patch lists to the batch's longest) gets ``None`` back, and the caller
encodes the batch directly.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from icu_tasks.data.dataset import read_rgb
from icu_unlearn.methods.base import TrainingExample
from icu_unlearn.models.encoding import IGNORE_INDEX, encode

#: Memo budget per processor: whole data sets of the tiny models fit; a real model's 336-px images
#: (1.35 MB of pixel values each) keep the most recent few hundred rows.
DEFAULT_MEMO_BYTES = 1 << 30


@functools.lru_cache(maxsize=1024)
def _load_rgb(path: str):
    return read_rgb(path)


def load_image(path: Path | None):
    """The example's image as an RGB PIL image (cached per path), or ``None``; missing or unreadable →
    :class:`DataError` (:func:`icu_tasks.data.dataset.read_rgb`)."""
    if path is None:
        return None
    return _load_rgb(str(path))


def encode_examples(processor: Any, examples: Sequence[TrainingExample]) -> dict[str, Any]:
    """``examples`` → one right-padded batch of model inputs with answer-only ``labels``
    (:func:`icu_unlearn.models.encoding.encode` on their questions, images and answers)."""
    images = [load_image(e.image) for e in examples]
    return dict(encode(processor, [e.question for e in examples], images, [e.answer for e in examples]))


class RowEncodings:
    """Per-row memo of :func:`encode_examples` outputs (``labels`` included).

    Args:
        processor: the HF processor (or tokenizer) every row is encoded with.
        max_bytes: LRU budget of the memo's tensors; a single row larger than it is encoded but not kept.
    """

    def __init__(self, processor: Any, max_bytes: int = DEFAULT_MEMO_BYTES) -> None:
        self.processor = processor
        self.max_bytes = max_bytes
        self._rows: OrderedDict[TrainingExample, dict[str, torch.Tensor]] = OrderedDict()
        self._bytes = 0

    def row(self, example: TrainingExample) -> dict[str, torch.Tensor]:
        """The encoding of one example (``[1, ...]`` sequence tensors), from the memo when it holds it."""
        hit = self._rows.get(example)
        if hit is not None:
            self._rows.move_to_end(example)
            return hit
        encoded = encode_examples(self.processor, [example])
        size = _nbytes(encoded)
        if size <= self.max_bytes:
            self._rows[example] = encoded
            self._bytes += size
            while self._bytes > self.max_bytes:
                self._bytes -= _nbytes(self._rows.popitem(last=False)[1])
        return encoded

    def collate(self, rows: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor] | None:
        """One right-padded batch of ``rows``, or ``None`` when the processor's tensors do not concatenate.

        A sequence tensor is one that every row has, shaped ``[1, row length]``; any other tensor is per image
        (only the rows with images have it) and is concatenated over the rows that do.
        """
        pad_id = getattr(getattr(self.processor, "tokenizer", self.processor), "pad_token_id", None)
        if not rows or pad_id is None:
            return None
        lengths = [r["input_ids"].shape[1] for r in rows]
        longest = max(lengths)
        batch: dict[str, torch.Tensor] = {}
        for key in dict.fromkeys(k for r in rows for k in r):
            parts = [r[key] for r in rows if key in r]
            if not all(isinstance(p, torch.Tensor) for p in parts):
                return None
            sequence = len(parts) == len(rows) and all(
                p.shape == (1, n) for p, n in zip(parts, lengths, strict=True)
            )
            if sequence:
                fill = {"input_ids": pad_id, "labels": IGNORE_INDEX}.get(key, 0)
                out = parts[0].new_full((len(rows), longest), fill)
                for i, (p, n) in enumerate(zip(parts, lengths, strict=True)):
                    out[i, :n] = p[0]
                batch[key] = out
            elif parts[0].dim() > 0 and all(p.shape[1:] == parts[0].shape[1:] for p in parts):
                batch[key] = torch.cat(parts, dim=0)
            else:
                return None
        return batch


def _nbytes(encoded: dict[str, Any]) -> int:
    return sum(t.nbytes for t in encoded.values() if isinstance(t, torch.Tensor))
