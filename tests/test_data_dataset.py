"""Loader API and validation: each corruption of a copy of the small set is one clear DataError line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from icu_tasks.data import schema
from icu_tasks.data.dataset import open_data, validate
from icu_tasks.errors import ConfigError, DataError
from icu_unlearn.cli import main
from tests.fixtures_data import SMALL_TASKS

ICU_BENCH = Path(sys.executable).with_name("icu-bench")


# ---------------------------------------------------------------------------------------------- loader


@pytest.fixture(scope="module")
def data(small_data_dir):
    return open_data(small_data_dir)


def test_loader_selects_tasks_retain_and_utility(data):
    assert data.task_ids == tuple(range(1, SMALL_TASKS + 1))
    assert data.data_hash == json.loads((data.root / schema.MANIFEST_FILE).read_text())["data_hash"]
    task2 = data.forget(2)
    assert len(task2) == 2 * 16 and {r["forget_task"] for r in task2} == {2}
    assert data.forget(np.int64(2)) == task2  # task ids from numpy / pandas work too
    both = data.forget([1, 3], view="vqa")
    assert len(both) == 2 * 2 * 8 and {r["forget_task"] for r in both} == {1, 3}
    assert {r["view"] for r in both} == {"vqa"}
    train, evl, hold = data.retain("train"), data.retain("eval"), data.holdout()
    assert len(train) == len(evl) == len(hold) == 4 * 16  # 12 retain profiles: 4 / 4 / 4
    ids = [{r["profile_id"] for r in rows} for rows in (train, evl, hold, data.forget([1, 2, 3]))]
    assert sum(map(len, ids)) == len(set().union(*ids)) == 18  # disjoint, every profile once
    assert {r["split"] for r in hold} == {"holdout"} and {r["forget_task"] for r in hold} == {0}
    assert data.holdout("vqa") == [r for r in hold if r["view"] == "vqa"]
    assert len(data.retain("all")) == len(train) + len(evl)  # "all" never includes holdout
    assert {r["split"] for r in data.utility()} == {"utility"}
    assert len(data.rows()) == data.manifest["counts"]["rows_total"]
    assert data.rows(split="retain_eval", view="qa") == [r for r in evl if r["view"] == "qa"]


def test_loader_keeps_paraphrases_apart(data):
    para = data.paraphrases()
    assert len(para) == data.manifest["counts"]["paraphrase_rows"] == 18 * 16
    assert not {r["id"] for r in para} & {r["id"] for r in data.rows()}  # never among the core rows
    assert all(r["phrasing"] == "paraphrase" for r in para)
    forget_para = data.paraphrases(split="forget", view="qa", forget_tasks=2)
    assert [r["core_id"] for r in forget_para] == [r["id"] for r in data.forget(2, view="qa")]
    ds = data.dataset(split="retain_eval", view="vqa", paraphrase=True)
    assert len(ds) == 4 * 8 and set(ds["phrasing"]) == {"paraphrase"} and set(ds["split"]) == {"retain_eval"}
    assert data.summary["paraphrase_rows"] == len(para)


def test_loader_keeps_longform_apart(data):
    rows = data.longform()
    assert len(rows) == data.summary["longform_rows"] == 18 and all(r["phrasing"] == "longform" for r in rows)
    assert not {r["id"] for r in rows} & {r["id"] for r in data.rows()}
    assert len(data.longform(split="forget", forget_tasks=2)) == 2
    ds = data.dataset(split="retain_eval", longform=True)
    assert len(ds) == 4 and set(ds["split"]) == {"retain_eval"} and len(ds[0]["values"]) == 8


def test_loader_images_and_datasets(data, small_data_dir):
    row = data.forget(1, view="vqa")[0]
    img = data.load_image(row["image"])
    assert img.mode == "RGB" and img.size == (160, 160)
    assert data.image_path(row["image"]) == small_data_dir / row["image"]
    ds = data.dataset(split="forget", view="qa")
    assert len(ds) == len(data.forget([1, 2, 3], view="qa")) and ds.features["forget_task"].dtype == "int32"
    assert ds[0] == data.forget([1, 2, 3], view="qa")[0]


def test_hf_datasets_reads_the_parquet(small_data_dir):
    from datasets import load_dataset

    ds = load_dataset("parquet", data_files=str(small_data_dir / schema.QA_FILE), split="train")
    assert ds.column_names == schema.QA_SCHEMA.names
    assert len(ds) == json.loads((small_data_dir / schema.MANIFEST_FILE).read_text())["counts"]["rows_total"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda d: d.forget(9), "forget task 9 does not exist"),
        (lambda d: d.rows(split="test"), "unknown split 'test'"),
        (lambda d: d.rows(view="audio"), "unknown view 'audio'"),
        (lambda d: d.retain("both"), "unknown retain part 'both'"),
    ],
)
def test_loader_rejects_unknown_selections(data, call, message):
    with pytest.raises(ConfigError, match=message):
        call(data)


def test_validate_summary_and_hash(small_data_dir):
    summary = validate(small_data_dir, check_hash=True)
    assert summary["hash_checked"] and summary["profiles"] == 18 and summary["forget_tasks"] == SMALL_TASKS


# ------------------------------------------------------------------------------------------ corruption


def _edit_rows(root: Path, edit: Callable[[list[dict]], list[dict]]) -> None:
    rows = pq.read_table(root / schema.QA_FILE).to_pylist()
    pq.write_table(pa.Table.from_pylist(edit(rows), schema=schema.QA_SCHEMA), root / schema.QA_FILE)


def _edit_para(root: Path, edit: Callable[[list[dict]], list[dict]]) -> None:
    path = root / schema.PARAPHRASE_FILE
    rows = pq.read_table(path).to_pylist()
    pq.write_table(pa.Table.from_pylist(edit(rows), schema=schema.PARAPHRASE_SCHEMA), path)


def _edit_longform(root: Path, edit: Callable[[list[dict]], list[dict]]) -> None:
    path = root / schema.LONGFORM_FILE
    rows = pq.read_table(path).to_pylist()
    pq.write_table(pa.Table.from_pylist(edit(rows), schema=schema.LONGFORM_SCHEMA), path)


def _holdout_profile(rows):
    return next(r["profile_id"] for r in rows if r["split"] == "holdout")


def _edit_table(root: Path, edit: Callable[[pa.Table], pa.Table]) -> None:
    pq.write_table(edit(pq.read_table(root / schema.QA_FILE)), root / schema.QA_FILE)


def _set(rows, pick, **changes):
    return [{**r, **changes} if pick(r) else r for r in rows]


def _profile_of_task(rows, task):
    return next(r["profile_id"] for r in rows if r["forget_task"] == task)


CORRUPTIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "no_manifest": (lambda d: (d / schema.MANIFEST_FILE).unlink(), r"has no manifest\.json"),
    "bad_manifest": (lambda d: (d / schema.MANIFEST_FILE).write_text("{oops"), r"is not valid JSON"),
    "no_qa": (lambda d: (d / schema.QA_FILE).unlink(), r"QA file .*qa\.parquet is missing"),
    "garbage_qa": (
        lambda d: (d / schema.QA_FILE).write_bytes(b"not parquet" * 10),
        "not a readable parquet file",
    ),
    "truncated_qa": (
        lambda d: (d / schema.QA_FILE).write_bytes((d / schema.QA_FILE).read_bytes()[:-100]),
        "not a readable parquet file",
    ),
    "no_profiles": (lambda d: (d / schema.PROFILES_FILE).unlink(), r"profiles file .* is missing"),
    "missing_column": (
        lambda d: _edit_table(d, lambda t: t.drop_columns(["answer"])),
        "column 'answer' is missing",
    ),
    "wrong_type": (
        lambda d: _edit_table(d, lambda t: t.set_column(9, "forget_task", t.column(9).cast(pa.string()))),
        "column 'forget_task' has type string, expected int32",
    ),
    "extra_column": (
        lambda d: _edit_table(d, lambda t: t.append_column("extra", pa.array(["x"] * len(t)))),
        "unexpected column 'extra'",
    ),
    "duplicate_id": (lambda d: _edit_rows(d, lambda rows: rows + rows[:1]), "duplicate id 'med-0001-"),
    "missing_image": (
        lambda d: (d / "images" / "lab-0003" / "masked_salary.png").unlink(),
        r"image file images/lab-0003/masked_salary\.png \(row 'lab-0003-salary-vqa'\) is missing",
    ),
    "overlapping_tasks": (
        lambda d: _edit_rows(
            d,
            lambda rows: _set(
                rows,
                lambda r: r["profile_id"] == _profile_of_task(rows, 1) and r["view"] == "qa",
                forget_task=2,
            ),
        ),
        "forget tasks 1 and 2 overlap: profile '",
    ),
    "forget_and_retain": (
        lambda d: _edit_rows(
            d,
            lambda rows: _set(
                rows,
                lambda r: r["profile_id"] == _profile_of_task(rows, 1) and r["view"] == "qa",
                split="retain_eval",
                forget_task=0,
            ),
        ),
        "is in both forget task 1 and retain_eval",
    ),
    "holdout_and_retain_train": (
        lambda d: _edit_rows(
            d,
            lambda rows: _set(
                rows,
                lambda r: r["profile_id"] == _holdout_profile(rows) and r["view"] == "qa",
                split="retain_train",
            ),
        ),
        r"profile '[a-z]+-\d+' is in both holdout and retain_train \(a holdout profile must be in no other split\)",
    ),
    "holdout_and_forget": (
        lambda d: _edit_rows(
            d,
            lambda rows: _set(
                rows,
                lambda r: r["profile_id"] == _holdout_profile(rows) and r["view"] == "vqa",
                split="forget",
                forget_task=1,
            ),
        ),
        r"is in both forget task 1 and holdout \(a holdout profile must be in no other split\)",
    ),
    "no_paraphrase_file": (
        lambda d: (d / schema.PARAPHRASE_FILE).unlink(),
        r"paraphrase file .*qa_paraphrase\.parquet is missing",
    ),
    "paraphrase_count": (
        lambda d: _edit_para(d, lambda rows: rows[:-1]),
        "manifest says paraphrase_rows = 288, the data has 287",
    ),
    "paraphrase_answer": (
        lambda d: _edit_para(
            d, lambda rows: _set(rows, lambda r: r["id"] == "med-0002-diagnosis-qa-para", answer="flu")
        ),
        r"row 'med-0002-diagnosis-qa-para' differs from its core row in 'answer'",
    ),
    "paraphrase_is_core_question": (
        lambda d: _edit_para(
            d,
            lambda rows: _set(
                rows,
                lambda r: r["id"] == "lab-0001-salary-vqa-para",
                question="What is the annual salary of the employee in this document?",
            ),
        ),
        r"row 'lab-0001-salary-vqa-para' asks its core question verbatim",
    ),
    "paraphrase_reuses_core_id": (
        lambda d: _edit_para(
            d,
            lambda rows: _set(
                rows, lambda r: r["id"] == "med-0001-address-qa-para", id="med-0001-address-qa"
            ),
        ),
        r"duplicate id 'med-0001-address-qa' \(also a core or paraphrase id\)",
    ),
    "no_longform_file": (
        lambda d: (d / schema.LONGFORM_FILE).unlink(),
        r"long-form file .*qa_longform\.parquet is missing",
    ),
    "longform_count": (
        lambda d: _edit_longform(d, lambda rows: rows[:-1]),
        "manifest says longform_rows = 18, the data has 17",
    ),
    "longform_answer_drops_a_value": (
        lambda d: _edit_longform(
            d, lambda rows: _set(rows, lambda r: r["id"] == "med-0002-longform", answer="A patient.")
        ),
        r"row 'med-0002-longform': the answer does not state the value '",
    ),
    "longform_split": (
        lambda d: _edit_longform(
            d, lambda rows: _set(rows, lambda r: r["id"] == "lab-0001-longform", split="utility")
        ),
        r"row 'lab-0001-longform' differs from its profile's rows in 'split'",
    ),
    "longform_with_image": (
        lambda d: _edit_longform(
            d, lambda rows: _set(rows, lambda r: r["id"] == "lab-0002-longform", image="images/x.png")
        ),
        r"row 'lab-0002-longform' is not a text-only long-form row",
    ),
    "empty_task": (
        lambda d: _edit_rows(d, lambda rows: _set(rows, lambda r: r["forget_task"] == 3, forget_task=2)),
        r"forget task 3 has no rows \(the manifest lists tasks 1\.\.3\)",
    ),
    "count_mismatch": (
        lambda d: _edit_rows(d, lambda rows: rows[:-1]),
        "manifest count mismatch: manifest says rows_total = 324, the data has 323",
    ),
    "unknown_split": (
        lambda d: _edit_rows(d, lambda rows: _set(rows, lambda r: r["split"] == "utility", split="test")),
        "has unknown split 'test'",
    ),
    "answer_not_in_choices": (
        lambda d: _edit_rows(
            d, lambda rows: _set(rows, lambda r: r["id"] == "lab-0002-salary-qa", answer="$1")
        ),
        r"row 'lab-0002-salary-qa': its answer '\$1' is not among its choices",
    ),
    "vqa_without_image": (
        lambda d: _edit_rows(
            d, lambda rows: _set(rows, lambda r: r["id"] == "med-0002-address-vqa", image=None)
        ),
        r"row 'med-0002-address-vqa' \(vqa view\) has no image",
    ),
}


@pytest.fixture
def copy(small_data_dir, tmp_path) -> Path:
    target = tmp_path / "icu"
    shutil.copytree(small_data_dir, target)
    return target


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corrupted_copy_is_one_clear_error(case, copy):
    corrupt, message = CORRUPTIONS[case]
    corrupt(copy)
    before = _snapshot(copy)
    with pytest.raises(DataError, match=message) as info:
        open_data(copy)
    assert "\n" not in str(info.value)
    assert _snapshot(copy) == before  # validation never writes


def test_changed_image_fails_only_the_hash_check(copy):
    from PIL import Image

    path = copy / "images" / "med-0001" / "full_0.png"
    img = Image.open(path).convert("RGB")
    img.putpixel((0, 0), (1, 2, 3))
    img.save(path)
    validate(copy)  # structure is fine
    with pytest.raises(DataError, match="data hash mismatch"):
        validate(copy, check_hash=True)


def test_missing_dir_and_file_as_dir(tmp_path):
    with pytest.raises(DataError, match="does not exist; generate one with `icu-bench data generate"):
        validate(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="is a file, not a directory"):
        validate(tmp_path / "file")


# ---------------------------------------------------------------------------------------------------- CLI


def test_cli_validate_ok(small_data_dir, capsys):
    assert main(["data", "validate", str(small_data_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ok: {small_data_dir}") and "18 profiles, 3 forget tasks, 324 QA rows" in out


def test_cli_generate_prints_summary(tmp_path, capsys):
    args = ["data", "generate", "--out", str(tmp_path / "d"), "--profiles", "4", "--tasks", "1"]
    args += ["--profiles-per-task", "2", "--image-size", "96", "--quiet", "--seed", "5"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "profiles      4 (2 medical, 2 labor)" in out and "QA rows       " in out
    assert main(args) == 2
    assert "not empty; pass --overwrite" in capsys.readouterr().err


@pytest.mark.subprocess
@pytest.mark.parametrize("case", ["missing_image", "overlapping_tasks"])
def test_cli_subprocess_exit_2_one_line(case, copy):
    CORRUPTIONS[case][0](copy)
    proc = subprocess.run(
        [str(ICU_BENCH), "data", "validate", str(copy)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr
