"""Stage loading: the adapter changes outputs without being merged, masks zero channels, clear errors."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from icu_tasks.errors import ConfigError, StageError
from icu_unlearn.models.encoding import encode
from icu_unlearn.models.loading import load_base, load_stage, unload_stage
from icu_unlearn.models.masks import apply_masks, read_masks, remove_masks, save_masks
from icu_unlearn.models.tiny import TinyConfig, build_tiny_model, builtin_corpus
from tests.fixtures_model import make_random_adapter

MLP = "model.language_model.layers.1.mlp.up_proj"


def _logits(model, processor) -> torch.Tensor:
    image = Image.new("RGB", (160, 224), (30, 120, 200))
    batch = encode(processor, ["Who is this?", "Where does Ana live?"], [image, None])
    with torch.inference_mode():
        return model(**batch).logits


def _capture(module):
    seen = {}
    handle = module.register_forward_hook(lambda _m, _i, out: seen.__setitem__("out", out.detach().clone()))
    return seen, handle


def test_adapter_changes_outputs_and_is_not_merged(tiny_model_dir, tiny_adapter_dir):
    weights = tiny_model_dir / "model.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    model, processor = load_base(tiny_model_dir)
    original = model.get_submodule(MLP).weight.detach().clone()
    base_logits = _logits(model, processor)

    staged = load_stage(model, tiny_adapter_dir)
    adapted_logits = _logits(staged, processor)
    assert not torch.allclose(base_logits, adapted_logits, atol=1e-4)

    wrapped = staged.get_base_model().get_submodule(MLP)
    assert hasattr(wrapped, "lora_A") and hasattr(wrapped, "base_layer")  # a live LoRA layer, not merged
    assert torch.equal(wrapped.base_layer.weight, original)
    assert not any(p.requires_grad for p in staged.parameters())
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == digest  # nothing written to the base dir

    clean = unload_stage(staged)
    assert torch.equal(_logits(clean, processor), base_logits)


def test_trainable_stage_continues_the_adapter(tiny_model_dir, tiny_adapter_dir):
    model, _ = load_base(tiny_model_dir)
    staged = load_stage(model, tiny_adapter_dir, trainable=True)
    trainable = [n for n, p in staged.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    saved = load_file(str(tiny_adapter_dir / "adapter_model.safetensors"))
    key = next(k for k in saved if "lora_B" in k)
    live = dict(staged.named_parameters())[key.replace(".weight", ".default.weight")]
    assert torch.equal(live.detach(), saved[key])


def test_masks_zero_the_masked_channels(tiny_model_dir, tiny_adapter_dir, tmp_path):
    model, processor = load_base(tiny_model_dir)
    module = model.get_submodule(MLP)
    mask = torch.ones(module.out_features)
    mask[::3] = 0
    seen, probe = _capture(module)
    before_logits = _logits(model, processor)
    before = seen["out"]
    probe.remove()

    handles = apply_masks(model, {MLP: mask})
    seen, probe = _capture(module)  # registered after the mask hook: sees the masked output
    after_logits = _logits(model, processor)
    probe.remove()
    assert (seen["out"][..., mask == 0] == 0).all()
    assert torch.equal(seen["out"][..., mask == 1], before[..., mask == 1])
    assert not torch.allclose(after_logits, before_logits)
    assert len(handles) == 1
    remove_masks(model)
    assert torch.equal(_logits(model, processor), before_logits)

    # In a stage dir, masks apply on top of the (LoRA-wrapped) module: the delta is masked too.
    stage = tmp_path / "stage_2"
    shutil.copytree(tiny_adapter_dir, stage)
    save_masks({MLP: mask}, stage / "masks.safetensors")
    assert torch.equal(read_masks(stage)[MLP], mask)
    staged = load_stage(load_base(tiny_model_dir)[0], stage)
    wrapped = staged.get_base_model().get_submodule(MLP)
    seen, probe = _capture(wrapped)
    _logits(staged, processor)
    probe.remove()
    assert (seen["out"][..., mask == 0] == 0).all() and (seen["out"][..., mask == 1] != 0).any()


def test_bad_masks_are_refused(tiny_model_dir, tmp_path):
    model, _ = load_base(tiny_model_dir)
    width = model.get_submodule(MLP).out_features
    with pytest.raises(ConfigError, match="0/1"):
        save_masks({MLP: torch.full((width,), 0.5)}, tmp_path / "m.safetensors")
    with pytest.raises(StageError, match="outputs"):
        apply_masks(model, {MLP: torch.ones(width + 1)})
    with pytest.raises(StageError, match="does not have"):
        apply_masks(model, {"model.language_model.layers.99.mlp.up_proj": torch.ones(width)})
    save_file({MLP: torch.full((width,), 2.0)}, str(tmp_path / "masks.safetensors"))
    with pytest.raises(StageError, match="0/1"):
        read_masks(tmp_path)


def test_stage_errors(tiny_model_dir, tiny_adapter_dir, tmp_path):
    model, _ = load_base(tiny_model_dir)
    with pytest.raises(StageError, match="stage dir not found"):
        load_stage(model, tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StageError, match="not a stage dir"):
        load_stage(model, tmp_path / "empty")

    bin_only = tmp_path / "bin_only"
    shutil.copytree(tiny_adapter_dir, bin_only)
    (bin_only / "adapter_model.safetensors").rename(bin_only / "adapter_model.bin")
    with pytest.raises(StageError, match="safetensors"):
        load_stage(model, bin_only)

    # Recorded for another (existing) base model.
    other = build_tiny_model(tmp_path / "other_base", builtin_corpus(0), seed=5)
    foreign = tmp_path / "foreign"
    shutil.copytree(tiny_adapter_dir, foreign)
    config = json.loads((foreign / "adapter_config.json").read_text())
    (foreign / "adapter_config.json").write_text(
        json.dumps({**config, "base_model_name_or_path": str(other)})
    )
    with pytest.raises(StageError, match="trained on base model"):
        load_stage(model, foreign)
    assert not hasattr(model, "peft_config")  # refused before PEFT touched the model


def test_adapter_of_another_shape_is_refused(tiny_model_dir, tmp_path):
    narrow = build_tiny_model(
        tmp_path / "narrow", builtin_corpus(0), seed=0, config=TinyConfig(text_hidden=128)
    )
    stage = make_random_adapter(narrow, tmp_path / "stage_1")
    config = json.loads((stage / "adapter_config.json").read_text())
    # Same recorded base (a moved run): only the shapes can tell the mismatch.
    (stage / "adapter_config.json").write_text(
        json.dumps({**config, "base_model_name_or_path": str(tiny_model_dir)})
    )
    model, _ = load_base(tiny_model_dir)
    with pytest.raises(StageError, match="does not fit the base model"):
        load_stage(model, stage)


def test_missing_model_dir_and_bad_options(tmp_path):
    with pytest.raises(ConfigError, match="model dir not found"):
        load_base(tmp_path / "nope")
    with pytest.raises(ConfigError, match="model dir not found: runs/nope"):
        load_base("runs/nope")  # relative, looks like a hub id: not in the (offline) cache either
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no config.json"):
        load_base(tmp_path / "empty")
    with pytest.raises(ConfigError, match="unknown dtype"):
        load_base(tmp_path / "empty", dtype="float8")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            load_base(tmp_path / "empty", device="cuda")


def test_hashing_advances_a_progress_bar_by_the_bytes_read(tmp_path):
    """The weight-hashing bar (shown for real models) counts every byte once and leaves the digest as sha256."""

    from icu_unlearn.models.identity import file_digest

    payload = bytes(range(256)) * 9000  # 2.2 MiB: three 1 MiB blocks
    (tmp_path / "w.bin").write_bytes(payload)

    class Count:
        n = 0

        def update(self, k: int) -> None:
            self.n += k

    bar = Count()
    assert file_digest(tmp_path / "w.bin", bar) == hashlib.sha256(payload).hexdigest()
    assert bar.n == len(payload)
