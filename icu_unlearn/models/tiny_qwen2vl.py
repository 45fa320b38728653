"""A tiny random Qwen2-VL, built from its config, to check that the model layer is architecture-generic.

It is saved the way a real Qwen2-VL checkpoint is laid out (``config.json``, safetensors weights, tokenizer
files, ``preprocessor_config.json`` naming ``Qwen2VLProcessor``, ``chat_template.jinja``) and loads through
the same :func:`icu_unlearn.models.loading.load_base` as the tiny LLaVA and real checkpoints.

Without torchvision, transformers cannot build ``Qwen2VLProcessor`` at all (its video processor has no PIL
variant and the processor constructor type-checks it even when ``None``), so this builder writes the
processor's parts itself, and ``load_base`` rebuilds the processor without its video part.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from icu_unlearn.models.tiny import builtin_corpus, check_out_dir, save_atomically, train_tokenizer

#: Qwen2-VL's chat template, reduced to what ICU-Bench sends (text and images; default system prompt).
QWEN2VL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

QWEN_SPECIALS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)


def build_tiny_qwen2vl(
    out_dir: str | os.PathLike,
    texts: Iterable[str] | None = None,
    seed: int = 0,
    vocab_size: int = 600,
    overwrite: bool = False,
) -> Path:
    """Build and save a ~0.2 M-parameter random Qwen2-VL (2 vision blocks, 2 decoder layers, hidden 64)."""
    import torch
    from transformers import Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    out = check_out_dir(out_dir, overwrite)
    corpus = list(texts) if texts is not None else builtin_corpus(seed)
    tokenizer = train_tokenizer(
        corpus,
        vocab_size,
        QWEN_SPECIALS,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )
    # 28 px merged patches; a 256×320 page → 8×12 patches → 24 image tokens.
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 24, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    config = _config(tokenizer)
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    info = {"builder": "icu_unlearn.models.tiny_qwen2vl", "seed": seed}
    return save_atomically(out, model, [tokenizer, image_processor], info, _processor_files)


def _config(tokenizer: Any) -> Any:
    """The tiny model's ``Qwen2VLConfig``: hidden 64, 2 decoder layers, 2 vision blocks, the tokenizer's ids."""
    from transformers import Qwen2VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    return Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 1024,
            # head_dim 16 → 8 rotary frequencies split over (time, height, width)
            "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": 64,
            "num_heads": 4,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )


def _processor_files(folder: Path) -> None:
    """What ``Qwen2VLProcessor.save_pretrained`` would add: the chat template and the processor class."""
    (folder / "chat_template.jinja").write_text(QWEN2VL_CHAT_TEMPLATE)
    pre = folder / "preprocessor_config.json"
    pre.write_text(
        json.dumps({**json.loads(pre.read_text()), "processor_class": "Qwen2VLProcessor"}, indent=2)
    )
