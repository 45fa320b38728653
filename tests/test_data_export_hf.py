"""``icu-bench data export-hf``: the data set as a Hugging Face DatasetDict with the images inside."""

from __future__ import annotations

from pathlib import Path

from tests.cli_helpers import assert_one_error, call_cli, snapshot


def test_export_loads_back_with_images_and_splits(small_data_dir: Path, tmp_path: Path) -> None:
    from datasets import Image, load_dataset

    from icu_tasks.data.dataset import open_data, read_rgb
    from icu_tasks.data.schema import SPLITS

    out = tmp_path / "hf"
    proc = call_cli(["data", "export-hf", out, "--data", small_data_dir], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    loaded = load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    data = open_data(small_data_dir)
    assert list(loaded) == list(SPLITS)
    for split in SPLITS:
        rows = data.rows(split=split)
        assert loaded[split].num_rows == len(rows) > 0
        assert loaded[split].features["image"] == Image()
        assert loaded[split]["id"] == [r["id"] for r in rows]
    row = next(r for r in loaded["forget"] if r["image"] is not None)
    source = next(r for r in data.rows(split="forget") if r["id"] == row["id"])
    assert row["image"].convert("RGB").tobytes() == read_rgb(source["image"], data.root).tobytes()
    assert all(r["image"] is None for r in loaded["forget"] if r["view"] == "qa")
    assert (out / "README.md").read_text().startswith("---\nconfigs:")


def test_export_refuses_a_non_empty_out(small_data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "hf"
    out.mkdir()
    (out / "keep.txt").write_text("mine\n")
    before = snapshot(tmp_path, small_data_dir)
    proc = call_cli(["data", "export-hf", out, "--data", small_data_dir], cwd=tmp_path)
    assert_one_error(proc, "is not an empty dir; pass --overwrite")
    assert snapshot(tmp_path, small_data_dir) == before


def test_the_export_is_a_data_dir_the_tasks_score(small_data_dir: Path, tiny_model_dir: Path, tmp_path: Path):
    """``source/`` is the data dir byte for byte: the export opens as data with the original's hash (a model
    trained on the original recognises it), validates with the hash recomputed, and an lmms-eval task scores
    its docs from it."""
    import json

    from icu_tasks.data.dataset import open_data, validate
    from icu_unlearn.models import load_base
    from icu_unlearn.scoring.evaluate import score
    from icu_unlearn.scoring.icu_hf import IcuHF

    out = tmp_path / "hf"
    assert call_cli(["data", "export-hf", out, "--data", small_data_dir], cwd=tmp_path).returncode == 0
    exported, original = open_data(out), open_data(small_data_dir)
    assert exported.root == out / "source"
    assert exported.data_hash == original.data_hash
    assert validate(out, check_hash=True)["data_hash"] == original.data_hash
    assert [r["id"] for r in exported.rows()] == [r["id"] for r in original.rows()]

    model, processor = load_base(tiny_model_dir, device="cpu")
    lm = IcuHF.from_loaded(model, processor, batch_size=4, max_new_tokens=4)
    results = score(lm, "pretrained=tiny", ["icu_forget_qa"], tmp_path / "eval", data_dir=out, limit=4)
    assert results["n-samples"]["icu_forget_qa"]["effective"] == 4
    (samples,) = (tmp_path / "eval").rglob("*_samples_icu_forget_qa.jsonl")
    ids = [json.loads(line)["exact_match"]["id"] for line in samples.read_text().splitlines()]
    assert ids == [r["id"] for r in original.rows(split="forget", view="qa")][:4]
