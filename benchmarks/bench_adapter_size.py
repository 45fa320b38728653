"""Size of a stage's LoRA adapter relative to its base model: LLaVA-1.5-7B shapes and the tiny model.

Target: the adapter a stage writes is at most 2% of the base model's bytes for LLaVA-1.5-7B. The 7B
model is built from its config (written out below) on the meta device — no weights, no download, seconds — and
wrapped with the unlearning stages' LoRA config (``TrainingMethodConfig`` defaults: r=16, α=16 on the language model's
q/k/v/o/gate/up/down projections) through PEFT's ``get_peft_model``. Bytes are parameters × element size: the
base in bf16 and the adapter both in bf16 and in the dtype PEFT actually gives it (PEFT up-casts adapter weights
of a half-precision base to float32 by default, and ``save_pretrained`` writes them as they are). The tiny
model's ratio (informational) comes from real files: the tiny model built with the project's builder, and a LoRA
adapter with the same config saved next to it.

    .venv/bin/python benchmarks/bench_adapter_size.py [--json]

The last line is one JSON object (for ``benchmarks/run_all.py``); with ``--json`` it is the only output.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

TARGET_RATIO = 0.02
BF16_BYTES = 2


def llava_15_7b_config() -> Any:
    """``llava-hf/llava-1.5-7b-hf``'s architecture: CLIP ViT-L/14-336 + Vicuna-7B (Llama-2-7B) + 2-layer GELU MLP."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision = CLIPVisionConfig(
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        image_size=336,
        patch_size=14,
        projection_dim=768,
    )
    text = LlamaConfig(
        hidden_size=4096,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        intermediate_size=11008,
        vocab_size=32064,
        max_position_embeddings=4096,
    )
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        projector_hidden_act="gelu",
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_token_index=32000,
    )


def stage_lora_config() -> Any:
    """The LoRA config a fresh unlearning stage trains (the ``TrainingMethodConfig`` defaults)."""
    from peft import LoraConfig

    from icu_unlearn.methods.config import TrainingMethodConfig

    cfg = TrainingMethodConfig()
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_target_modules,
        bias="none",
    )


def _split(model: Any) -> tuple[list[Any], list[Any]]:
    """(adapter parameters, base parameters) of a PEFT model."""
    params = list(model.named_parameters())
    return [p for n, p in params if "lora_" in n], [p for n, p in params if "lora_" not in n]


def llava_ratio() -> dict[str, Any]:
    """Adapter vs base bytes for LLaVA-1.5-7B shapes (meta device: no memory, no weights)."""
    import torch
    from peft import get_peft_model

    from icu_unlearn.models.loading import quiet_transformers

    with torch.device("meta"), quiet_transformers():
        from transformers import LlavaForConditionalGeneration

        model = LlavaForConditionalGeneration(llava_15_7b_config()).to(torch.bfloat16)
        peft_model = get_peft_model(model, stage_lora_config())
    adapter, base = _split(peft_model)
    n_adapter, n_base = sum(p.numel() for p in adapter), sum(p.numel() for p in base)
    saved_bytes = sum(p.numel() * p.element_size() for p in adapter)
    return {
        "base_params": n_base,
        "adapter_params": n_adapter,
        "adapter_tensors": len(adapter),
        "base_bytes_bf16": n_base * BF16_BYTES,
        "adapter_bytes_bf16": n_adapter * BF16_BYTES,
        "ratio_bf16": n_adapter / n_base,
        "adapter_dtype_as_saved": str(adapter[0].dtype).removeprefix("torch."),
        "adapter_bytes_as_saved": saved_bytes,
        "ratio_as_saved": saved_bytes / (n_base * BF16_BYTES),
    }


def tiny_ratio() -> dict[str, Any]:
    """Adapter file vs model file of the tiny model, both saved by the project's own code paths."""
    from peft import get_peft_model

    from icu_unlearn.models import build_tiny_model, load_base
    from icu_unlearn.models.loading import quiet_transformers

    with tempfile.TemporaryDirectory(prefix="icu-bench-adapter-") as tmp:
        with quiet_transformers():
            model_dir = build_tiny_model(Path(tmp) / "tiny", None, seed=0)
            model, _ = load_base(model_dir, device="cpu")
            peft_model = get_peft_model(model, stage_lora_config())
            peft_model.save_pretrained(str(Path(tmp) / "stage_1"))
        model_bytes = sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))
        adapter_bytes = (Path(tmp) / "stage_1" / "adapter_model.safetensors").stat().st_size
        adapter, base = _split(peft_model)
    return {
        "model_file_bytes": model_bytes,
        "adapter_file_bytes": adapter_bytes,
        "base_params": sum(p.numel() for p in base),
        "adapter_params": sum(p.numel() for p in adapter),
        "ratio": adapter_bytes / model_bytes,
    }


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    args = parser.parse_args(argv)

    llava, tiny = llava_ratio(), tiny_ratio()
    passed = llava["ratio_as_saved"] <= TARGET_RATIO and llava["ratio_bf16"] <= TARGET_RATIO
    result = {
        "benchmark": "adapter_size",
        "llava_1_5_7b": llava,
        "tiny": tiny,
        "target_ratio": TARGET_RATIO,
        "pass": passed,
        "rows": [
            {
                "name": "adapter bytes / base bytes, LLaVA-1.5-7B",
                "measured": f"{llava['ratio_as_saved']:.2%} ({llava['adapter_dtype_as_saved']}); "
                f"{llava['ratio_bf16']:.2%} (bf16)",
                "target": f"<= {TARGET_RATIO:.0%}",
                "pass": passed,
            },
            {
                "name": "adapter bytes / model bytes, tiny model",
                "measured": f"{tiny['ratio']:.1%}",
                "target": "info",
                "pass": None,
            },
        ],
    }
    if not args.json:
        print("LLaVA-1.5-7B shapes (meta device), stage LoRA r=16, alpha=16 on the language model:")
        print(f"  base     {llava['base_params']:>14,} params  {_mib(llava['base_bytes_bf16']):>14} (bf16)")
        print(
            f"  adapter  {llava['adapter_params']:>14,} params  {_mib(llava['adapter_bytes_bf16']):>14} (bf16), "
            f"{_mib(llava['adapter_bytes_as_saved'])} as saved ({llava['adapter_dtype_as_saved']}, "
            f"{llava['adapter_tensors']} tensors)"
        )
        print(
            f"  ratio    {llava['ratio_bf16']:.3%} (bf16), {llava['ratio_as_saved']:.3%} as saved "
            f"(target <= {TARGET_RATIO:.0%}: {'PASS' if passed else 'FAIL'})"
        )
        print("tiny model (files on disk):")
        print(
            f"  model.safetensors {_mib(tiny['model_file_bytes'])}, adapter_model.safetensors "
            f"{_mib(tiny['adapter_file_bytes'])}: {tiny['ratio']:.1%} (informational: tiny layers are narrow)"
        )
    print(json.dumps(result))
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
