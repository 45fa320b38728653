"""The tiny LLaVA builder: offline reload, identical logits after save/load, determinism, CLI errors."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from PIL import Image

from icu_tasks.errors import ConfigError
from icu_unlearn.cli import main
from icu_unlearn.models.encoding import encode
from icu_unlearn.models.tiny import TinyConfig, build_tiny_model, builtin_corpus, create_tiny_model

#: Every test here builds a tiny model.
pytestmark = pytest.mark.model


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _page(color=(180, 40, 40)) -> Image.Image:
    img = Image.new("RGB", (160, 224), (255, 255, 255))
    img.paste(Image.new("RGB", (40, 50), color), (10, 10))
    return img


def test_reload_offline_gives_identical_logits(tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model, processor = create_tiny_model(builtin_corpus(0), seed=0)
    out = build_tiny_model(tmp_path / "tiny", builtin_corpus(0), seed=0)
    names = {p.name for p in out.iterdir()}
    assert "model.safetensors" in names and not any(n.endswith(".bin") for n in names)

    loaded = AutoModelForImageTextToText.from_pretrained(out).eval()
    loaded_proc = AutoProcessor.from_pretrained(out)
    assert type(loaded).__name__ == "LlavaForConditionalGeneration"
    # No torchvision: the processor must be the PIL (slow) CLIP image processor.
    assert type(loaded_proc.image_processor).__name__ == "CLIPImageProcessorPil"
    assert loaded_proc.chat_template == processor.chat_template

    questions, images, answers = (
        ["Who is in this document?", "Where does Ana Silva live?"],
        [_page(), None],
        None,
    )
    batch = encode(loaded_proc, questions, images, answers)
    # 64 px / 16 px patches = 16 image tokens; CLS is dropped on both sides (the recipe's pitfall).
    assert (
        int((batch["input_ids"][0] == loaded.config.image_token_id).sum()) == TinyConfig().image_tokens == 16
    )
    with torch.inference_mode():
        before = model(**encode(processor, questions, images)).logits
        after = loaded(**batch).logits
    assert torch.equal(before, after)


def test_same_seed_same_files_other_seed_other_weights(tmp_path):
    corpus = builtin_corpus(0)
    a = build_tiny_model(tmp_path / "a", corpus, seed=3)
    b = build_tiny_model(tmp_path / "b", corpus, seed=3)
    c = build_tiny_model(tmp_path / "c", corpus, seed=4)
    for name in ("model.safetensors", "tokenizer.json", "config.json", "processor_config.json"):
        assert _sha(a / name) == _sha(b / name), name
    assert _sha(a / "model.safetensors") != _sha(c / "model.safetensors")
    assert _sha(a / "tokenizer.json") == _sha(c / "tokenizer.json")  # tokenizer depends on the corpus only


def test_size_matches_the_measured_recipe(tmp_path, tiny_model_dir):
    """The default recipe (four decoder layers) is ~3.7 M parameters, the demo's and the fixture's (two) ~2.4 M;
    a vocabulary smaller than 1,024 makes either slightly smaller."""
    default = build_tiny_model(tmp_path / "default", builtin_corpus(0), seed=0)
    assert 3.0e6 < json.loads((default / "tiny_model.json").read_text())["params"] < 4.0e6
    info = json.loads((tiny_model_dir / "tiny_model.json").read_text())
    assert 2.0e6 < info["params"] < 3.0e6
    tokenizer = json.loads((tiny_model_dir / "tokenizer.json").read_text())
    assert len(tokenizer["model"]["vocab"]) <= TinyConfig().vocab_size


def test_tokenizer_covers_the_benchmark_text(tiny_model_dir, small_data_dir):
    from transformers import AutoTokenizer

    from icu_tasks.data.dataset import open_data

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    row = open_data(small_data_dir).rows(view="qa")[0]
    ids = tok(row["answer"], add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == row["answer"]
    # Trained on the data's text: a whole answer takes few tokens (far fewer than its bytes).
    assert len(ids) < len(row["answer"].encode()) / 2


def test_config_checks():
    with pytest.raises(ConfigError, match="not a multiple"):
        TinyConfig(image_size=60)
    with pytest.raises(ConfigError, match="divisible"):
        TinyConfig(text_hidden=250)


def test_cli_refuses_to_overwrite_and_builds_from_data(tmp_path, capsys, small_data_dir, tiny_model_dir):
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["model", "build-tiny", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: output dir already exists") and "\n" not in err
    assert (out / "keep.txt").read_text() == "mine"
    args = ["model", "build-tiny", "--out", str(out), "--data", str(small_data_dir), "--overwrite"]
    assert main(args) == 0
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()
    assert "parameters" in capsys.readouterr().out
    # Same data, same (default) seed and config as the library builder: the same model, byte for byte; the
    # tokenizer is also the session fixture's (same data), whose model has the demo's two layers.
    from icu_unlearn.models.tiny import corpus_from_data

    ref = build_tiny_model(tmp_path / "ref", corpus_from_data(small_data_dir), seed=0)
    for name in ("model.safetensors", "tokenizer.json"):
        assert _sha(out / name) == _sha(ref / name), name
    assert _sha(out / "tokenizer.json") == _sha(tiny_model_dir / "tokenizer.json")


def test_cli_missing_data_dir_is_one_line(tmp_path, capsys):
    assert main(["model", "build-tiny", "--out", str(tmp_path / "m"), "--data", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    assert not (tmp_path / "m").exists()
