"""The generator: counts, full-scale arithmetic, splits, determinism, scale validation, safe writing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from icu_tasks.data import schema, utility
from icu_tasks.data.generate import GenerateConfig, expected_counts, generate
from icu_tasks.errors import ConfigError
from tests.fixtures_data import SMALL_PROFILES, SMALL_PROFILES_PER_TASK, SMALL_SCALE, SMALL_TASKS


def _manifest(root: Path) -> dict:
    return json.loads((root / schema.MANIFEST_FILE).read_text())


def _qa(root: Path) -> list[dict]:
    return pq.read_table(root / schema.QA_FILE).to_pylist()


def test_full_scale_arithmetic():
    """The defaults are the paper's benchmark: 1,000 profiles, 9,500 images, 16,000 QA rows, 100 tasks."""
    counts = expected_counts(GenerateConfig())
    assert counts["profiles_medical"] == counts["profiles_labor"] == 500
    assert counts["images"] == 500 * (2 + 8) + 500 * (2 + 7) == 9500
    assert counts["qa_rows"] == 1000 * 8 * 2 == 16000
    assert counts["forget_tasks"] == 100 and counts["forget_profiles"] == 500
    assert counts["retain_train_profiles"] == counts["retain_eval_profiles"] == 250
    assert counts["utility_images"] == 20
    assert counts["utility_rows"] == 20 * len(utility.SPECIMEN_QUESTIONS) + utility.N_FACT_ROWS
    assert counts["rows_total"] == 16000 + counts["utility_rows"]


def test_small_counts_match_files(small_data_dir):
    manifest = _manifest(small_data_dir)
    counts = manifest["counts"]
    assert counts == {
        **expected_counts(GenerateConfig(**SMALL_SCALE)),
        "rows_by_split": counts["rows_by_split"],
    }
    rows = _qa(small_data_dir)
    assert len(rows) == counts["rows_total"] == SMALL_PROFILES * 16 + counts["utility_rows"]
    pngs = list((small_data_dir / schema.IMAGES_DIR).rglob("*.png"))
    assert len(pngs) == counts["images"] + counts["utility_images"] == 12 * 10 + 12 * 9 + 2
    by_split = Counter(r["split"] for r in rows)
    assert by_split == counts["rows_by_split"]
    assert by_split["forget"] == SMALL_TASKS * SMALL_PROFILES_PER_TASK * 16
    assert counts["images"] == sum(
        len(p.parent.name.split("-")) == 2 for p in pngs
    )  # med-0001/..., lab-0001/...


def test_manifest_marks_data_synthetic(small_data_dir):
    manifest = _manifest(small_data_dir)
    assert manifest["synthetic"] is True and "FICTIONAL" in manifest["notice"]
    assert manifest["scale"] == {k: SMALL_SCALE[k] for k in ("profiles", "tasks", "profiles_per_task")}
    assert manifest["seed"] == SMALL_SCALE["seed"] and manifest["image_size"] == SMALL_SCALE["image_size"]
    assert len(manifest["data_hash"]) == 64


def test_splits_are_disjoint_balanced_and_cover_every_profile(small_data_dir):
    rows = [r for r in _qa(small_data_dir) if r["split"] != "utility"]
    home = {}
    for r in rows:
        assert home.setdefault(r["profile_id"], (r["split"], r["forget_task"])) == (
            r["split"],
            r["forget_task"],
        )
    assert len(home) == SMALL_PROFILES
    tasks: dict[int, list[str]] = {}
    for pid, (split, task) in home.items():
        if split == "forget":
            tasks.setdefault(task, []).append(pid)
    assert sorted(tasks) == list(range(1, SMALL_TASKS + 1))
    for members in tasks.values():  # 2 per task: one medical, one labor
        assert sorted(m[:3] for m in members) == ["lab", "med"]
    manifest_tasks = {int(k): sorted(v) for k, v in _manifest(small_data_dir)["forget_tasks"].items()}
    assert manifest_tasks == {k: sorted(v) for k, v in tasks.items()}
    retain = Counter((split, pid[:3]) for pid, (split, _) in home.items() if split != "forget")
    # 9 retain profiles per domain: the odd medical one goes to train, the odd labor one to eval.
    assert retain == {
        ("retain_train", "med"): 5,
        ("retain_eval", "med"): 4,
        ("retain_train", "lab"): 4,
        ("retain_eval", "lab"): 5,
    }


def test_full_scale_split_plan_without_rendering():
    """The split plan at full scale (no images rendered): 100 tasks of 5, each 3+2 or 2+3 by domain."""
    from icu_tasks.data.generate import assign_splits
    from icu_tasks.data.profiles import make_profiles

    cfg = GenerateConfig()
    plan = assign_splits(make_profiles(500, cfg.seed), cfg)
    per_task = Counter(task for split, task in plan.values() if split == "forget")
    assert sorted(per_task) == list(range(1, 101)) and set(per_task.values()) == {5}
    by_domain = Counter((task, pid[:3]) for pid, (split, task) in plan.items() if split == "forget")
    assert {tuple(sorted((by_domain[(t, "med")], by_domain[(t, "lab")]))) for t in per_task} == {(2, 3)}
    assert Counter(s for s, _ in plan.values()) == {"forget": 500, "retain_train": 250, "retain_eval": 250}


def test_answers_are_short_and_identities_unique(small_data_dir):
    rows = [r for r in _qa(small_data_dir) if r["split"] != "utility" and r["view"] == "qa"]
    assert max(len(r["answer"]) for r in rows) <= 40  # short enough for a tiny model to memorise
    for key in ("patient_name", "employee_name", "id_number", "address", "date_of_birth", "salary"):
        answers = [r["answer"] for r in rows if r["field"] == key]
        assert answers and len(set(answers)) == len(answers), key


def test_same_seed_same_hash_any_workers_other_seed_differs(small_data_dir, tmp_path):
    again = generate(tmp_path / "again", workers=2, progress=False, **SMALL_SCALE)
    first = _manifest(small_data_dir)
    assert again["data_hash"] == first["data_hash"]
    assert (tmp_path / "again" / schema.QA_FILE).read_bytes() == (
        small_data_dir / schema.QA_FILE
    ).read_bytes()
    other = generate(tmp_path / "other", workers=1, progress=False, **{**SMALL_SCALE, "seed": 1})
    assert other["data_hash"] != first["data_hash"]
    assert _qa(tmp_path / "other")[0]["answer"] != _qa(small_data_dir)[0]["answer"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"profiles": 25}, "profiles must be an even number"),
        ({"profiles": 2, "tasks": 1, "profiles_per_task": 1}, "profiles must be an even number"),
        ({"tasks": 0}, "tasks and profiles_per_task must be >= 1"),
        ({"profiles_per_task": -1}, "tasks and profiles_per_task must be >= 1"),
        ({"profiles": 10, "tasks": 3, "profiles_per_task": 3}, "must leave at least 2"),
        ({"image_size": 32}, "image_size must be between"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"profiles": "24"}, "profiles must be an integer"),
        ({"workers": 0}, "workers must be an integer >= 1"),
    ],
)
def test_bad_scale_is_a_config_error_and_writes_nothing(kwargs, message, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=message):
        generate(out, progress=False, **{**SMALL_SCALE, **kwargs})
    assert list(tmp_path.iterdir()) == []


def test_smallest_valid_scale(tmp_path):
    """4 profiles, 1 task of 2: leaves exactly 1 retain_train and 1 retain_eval profile."""
    m = generate(tmp_path / "tiny", profiles=4, tasks=1, profiles_per_task=2, image_size=96, progress=False)
    assert m["counts"]["retain_train_profiles"] == m["counts"]["retain_eval_profiles"] == 1


def test_refuses_to_overwrite_without_flag(small_data_dir, tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(ConfigError, match="not empty; pass --overwrite"):
        generate(out, progress=False, **SMALL_SCALE)
    with pytest.raises(ConfigError, match="not an ICU-Bench data dir"):  # even with overwrite: no manifest
        generate(out, overwrite=True, progress=False, **SMALL_SCALE)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    file_target = tmp_path / "afile"
    file_target.write_text("x")
    with pytest.raises(ConfigError, match="is not a directory"):
        generate(file_target, progress=False, **SMALL_SCALE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "data"]  # no temp dirs left behind


def test_overwrite_replaces_a_data_dir_and_empty_dir_is_fine(tmp_path):
    out = tmp_path / "data"
    out.mkdir()  # an empty dir may be generated into
    first = generate(out, progress=False, **{**SMALL_SCALE, "seed": 3})
    second = generate(out, overwrite=True, progress=False, **{**SMALL_SCALE, "seed": 4})
    assert _manifest(out)["data_hash"] == second["data_hash"] != first["data_hash"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_hash_is_stable_across_processes(tmp_path):
    """A fresh interpreter with another string-hash salt (the CLI) reproduces an in-process generation."""
    scale = [
        "--profiles",
        "4",
        "--tasks",
        "1",
        "--profiles-per-task",
        "2",
        "--image-size",
        "96",
        "--seed",
        "11",
    ]
    local = generate(
        tmp_path / "a", profiles=4, tasks=1, profiles_per_task=2, image_size=96, seed=11, progress=False
    )
    cli = Path(sys.executable).with_name("icu-bench")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    proc = subprocess.run(
        [str(cli), "data", "generate", "--out", str(tmp_path / "b"), "--quiet", *scale],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert _manifest(tmp_path / "b")["data_hash"] == local["data_hash"]
