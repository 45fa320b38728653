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
from icu_tasks.data.generate import generate
from icu_tasks.data.plan import GenerateConfig, expected_counts
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
    # The 500 retain profiles: 40 / 30 / 30 % train / eval / holdout, 100 / 75 / 75 per domain.
    assert (counts["retain_train_profiles"], counts["retain_eval_profiles"], counts["holdout_profiles"]) == (
        200,
        150,
        150,
    )
    assert counts["paraphrase_rows"] == 16000  # counted apart from the core rows
    assert counts["longform_rows"] == 1000  # one per profile, counted apart from the core rows too
    assert counts["utility_images"] == 20
    assert counts["utility_rows"] == 20 * len(utility.SPECIMEN_QUESTIONS) + utility.N_FACT_ROWS
    assert counts["rows_total"] == 16000 + counts["utility_rows"]


def test_small_counts_match_files(small_data_dir):
    manifest = _manifest(small_data_dir)
    counts = manifest["counts"]
    assert counts == {
        **expected_counts(GenerateConfig(**SMALL_SCALE)),
        "rows_by_split": counts["rows_by_split"],
        "paraphrase_rows_by_split": counts["paraphrase_rows_by_split"],
        "longform_rows_by_split": counts["longform_rows_by_split"],
    }
    rows = _qa(small_data_dir)
    assert len(rows) == counts["rows_total"] == SMALL_PROFILES * 16 + counts["utility_rows"]
    pngs = list((small_data_dir / schema.IMAGES_DIR).rglob("*.png"))
    assert len(pngs) == counts["images"] + counts["utility_images"] == 9 * 10 + 9 * 9 + 2
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
    # 6 retain profiles per domain; quotas 2.4 / 1.8 / 1.8 -> floors 2 / 1 / 1, the 2 left over go to the
    # largest remainders (eval, holdout): 2 / 2 / 2.
    assert retain == {
        (split, domain): 2
        for split in ("retain_train", "retain_eval", "holdout")
        for domain in ("med", "lab")
    }


def test_full_scale_split_plan_without_rendering():
    """The split plan at full scale (no images rendered): 100 tasks of 5, each 3+2 or 2+3 by domain."""
    from icu_tasks.data.plan import assign_splits
    from icu_tasks.data.profiles import make_profiles

    cfg = GenerateConfig()
    plan = assign_splits(make_profiles(500, cfg.seed), cfg)
    per_task = Counter(task for split, task in plan.values() if split == "forget")
    assert sorted(per_task) == list(range(1, 101)) and set(per_task.values()) == {5}
    by_domain = Counter((task, pid[:3]) for pid, (split, task) in plan.items() if split == "forget")
    assert {tuple(sorted((by_domain[(t, "med")], by_domain[(t, "lab")]))) for t in per_task} == {(2, 3)}
    assert Counter(s for s, _ in plan.values()) == {
        "forget": 500,
        "retain_train": 200,
        "retain_eval": 150,
        "holdout": 150,
    }
    by_split_domain = Counter((s, pid[:3]) for pid, (s, _) in plan.items() if s != "forget")
    assert {k: by_split_domain[(k, "med")] for k in ("retain_train", "retain_eval", "holdout")} == {
        "retain_train": 100,
        "retain_eval": 75,
        "holdout": 75,
    }
    for split in ("retain_train", "retain_eval", "holdout"):  # the same in both domains
        assert by_split_domain[(split, "med")] == by_split_domain[(split, "lab")]


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        # (train, eval, holdout) of n retain profiles of one domain, by hand: quotas 0.4n / 0.3n / 0.3n,
        # floors, then the leftovers to the largest remainders (ties: train, eval, holdout).
        (250, (100, 75, 75)),
        (50, (20, 15, 15)),
        (9, (3, 3, 3)),  # 3.6 / 2.7 / 2.7
        (5, (2, 2, 1)),  # 2 / 1.5 / 1.5: one leftover, the tie goes to eval
        (4, (2, 1, 1)),  # 1.6 / 1.2 / 1.2
        (3, (1, 1, 1)),  # 1.2 / 0.9 / 0.9
        (2, (1, 1, 0)),  # too few for a holdout profile
        (0, (0, 0, 0)),
    ],
)
def test_retain_split_sizes_by_hand(n, expected):
    from icu_tasks.data.plan import retain_split_sizes

    for domain in schema.DOMAINS:
        sizes = retain_split_sizes(n, domain)
        assert (sizes["retain_train"], sizes["retain_eval"], sizes["holdout"]) == expected


def test_a_single_retain_profile_goes_to_train_in_medical_and_eval_in_labor():
    from icu_tasks.data.plan import retain_split_sizes

    assert retain_split_sizes(1, "medical") == {"retain_train": 1, "retain_eval": 0, "holdout": 0}
    assert retain_split_sizes(1, "labor") == {"retain_train": 0, "retain_eval": 1, "holdout": 0}


def test_mid_scale_split_plan_without_rendering():
    """200 profiles, 20 tasks of 5: 100 retain profiles = 50 per domain -> 20 / 15 / 15 each; disjoint."""
    from icu_tasks.data.plan import assign_splits
    from icu_tasks.data.profiles import make_profiles

    cfg = GenerateConfig(profiles=200, tasks=20, profiles_per_task=5)
    profiles = make_profiles(100, cfg.seed)
    plan = assign_splits(profiles, cfg)
    assert sorted(plan) == sorted(p.profile_id for p in profiles)  # every profile exactly once (dict keys)
    by = Counter((s, pid[:3]) for pid, (s, _) in plan.items())
    assert by == {
        ("forget", "med"): 50,
        ("forget", "lab"): 50,
        ("retain_train", "med"): 20,
        ("retain_train", "lab"): 20,
        ("retain_eval", "med"): 15,
        ("retain_eval", "lab"): 15,
        ("holdout", "med"): 15,
        ("holdout", "lab"): 15,
    }
    counts = expected_counts(cfg)
    assert (counts["retain_train_profiles"], counts["retain_eval_profiles"], counts["holdout_profiles"]) == (
        40,
        30,
        30,
    )
    assert all(task == 0 for s, task in plan.values() if s != "forget")


def test_small_set_holdout_counts(small_data_dir):
    """18 profiles, 3 tasks x 2: 12 retain profiles -> 4 train, 4 eval, 4 holdout (2 per domain each)."""
    counts = _manifest(small_data_dir)["counts"]
    assert (counts["retain_train_profiles"], counts["retain_eval_profiles"], counts["holdout_profiles"]) == (
        4,
        4,
        4,
    )
    assert counts["rows_by_split"]["holdout"] == 4 * 16
    assert counts["qa_rows"] == 18 * 16 and counts["rows_total"] == 18 * 16 + counts["utility_rows"]


def test_paraphrase_file_rephrases_every_profile_row_outside_the_core_rows(small_data_dir):
    core = {r["id"]: r for r in _qa(small_data_dir)}
    para = pq.read_table(small_data_dir / schema.PARAPHRASE_FILE).to_pylist()
    manifest = _manifest(small_data_dir)
    profile_rows = [r for r in core.values() if r["split"] != "utility"]
    assert len(para) == len(profile_rows) == manifest["counts"]["paraphrase_rows"] == 18 * 16
    assert "phrasing" not in pq.read_schema(small_data_dir / schema.QA_FILE).names  # core file unchanged
    assert not {r["id"] for r in para} & set(core)  # no id shared with a core row
    assert {r["core_id"] for r in para} == {r["id"] for r in profile_rows}
    for r in para:
        src = core[r["core_id"]]
        assert r["id"] == src["id"] + "-para" and r["phrasing"] == "paraphrase"
        assert r["question"] != src["question"]
        for col in ("profile_id", "field", "view", "answer", "choices", "image", "split", "forget_task"):
            assert r[col] == src[col], col
    assert Counter(r["split"] for r in para) == {
        k: v for k, v in manifest["counts"]["paraphrase_rows_by_split"].items() if v
    }
    assert manifest["files"]["paraphrase"] == schema.PARAPHRASE_FILE


def test_longform_file_summarises_every_profile_outside_the_core_rows(small_data_dir):
    import re

    from icu_tasks.data.longform import TEMPLATES

    core = [r for r in _qa(small_data_dir) if r["split"] != "utility"]
    rows = pq.read_table(small_data_dir / schema.LONGFORM_FILE).to_pylist()
    manifest = _manifest(small_data_dir)
    assert len(rows) == manifest["counts"]["longform_rows"] == SMALL_PROFILES == 18
    assert [r["profile_id"] for r in rows] == list(dict.fromkeys(r["profile_id"] for r in core))
    assert not {r["id"] for r in rows} & {r["id"] for r in core}
    records = {"medical": "medical report", "labor": "labor contract"}
    for r in rows:
        mine = [c for c in core if c["profile_id"] == r["profile_id"] and c["view"] == "qa"]
        name = next(c["answer"] for c in mine if c["field"] in ("patient_name", "employee_name"))
        assert r["question"] == f"Summarise the {records[r['domain']]} of {name}."
        assert (r["split"], r["forget_task"]) == (mine[0]["split"], mine[0]["forget_task"])
        assert (r["view"], r["image"], r["choices"], r["phrasing"]) == ("qa", None, [], "longform")
        by_key = {c["field"]: c["answer"] for c in mine}
        assert r["values"] == [by_key[k] for k, _ in schema.QUESTIONS[r["domain"]]]
        assert r["answer"] == TEMPLATES[r["domain"]][r["template"]].format(**by_key)
        assert all(v in r["answer"] for v in r["values"])
        assert len(re.findall(r"\w+|[^\w\s]", r["answer"])) >= 30  # measured minimum on this data: 42
    assert len({(r["domain"], r["template"]) for r in rows}) >= 4  # several wordings in use
    assert Counter(r["split"] for r in rows) == {
        k: v for k, v in manifest["counts"]["longform_rows_by_split"].items() if v
    }
    assert manifest["files"]["longform"] == schema.LONGFORM_FILE


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
    """4 profiles, 1 task of 2: leaves exactly 1 retain_train and 1 retain_eval profile (no holdout)."""
    m = generate(tmp_path / "tiny", profiles=4, tasks=1, profiles_per_task=2, image_size=96, progress=False)
    assert m["counts"]["retain_train_profiles"] == m["counts"]["retain_eval_profiles"] == 1
    assert m["counts"]["holdout_profiles"] == 0 and m["counts"]["rows_by_split"]["holdout"] == 0


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


@pytest.mark.subprocess
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


@pytest.mark.subprocess
def test_a_worker_that_cannot_start_is_one_error_not_a_hang(tmp_path):
    """``generate(workers=2)`` from a script without a ``__main__`` guard: every spawned worker fails while it
    imports the script; the pool breaks and generate raises one DataError within seconds (a
    ``multiprocessing.Pool`` would start new workers for ever), leaving neither output nor temp dir. Each
    worker runs the script's own ``generate`` call while it imports it (as ``__mp_main__``: the script sends
    those calls to ``out_child``) and may be stopped in the middle of it; what they leave is the unguarded
    script's doing."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import sys\nfrom icu_tasks.data.generate import generate\n"
        "out = sys.argv[1] if __name__ == '__main__' else sys.argv[1] + '_child'\n"
        "generate(out, seed=1, profiles=12, tasks=2, profiles_per_task=2, image_size=96, workers=2, "
        "progress=False)\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "out")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("icu_tasks.errors.DataError: a rendering worker process ended abruptly"), last
    assert '`if __name__ == "__main__":`' in last
    left = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith((".out_child.", "out_child")))
    assert left == ["unguarded.py"], left
