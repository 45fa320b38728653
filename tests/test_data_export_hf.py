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
