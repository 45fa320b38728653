"""Generate the ICU-Bench data set: fictional profiles -> document images -> QA parquet + manifest.

Everything is a pure function of the seed and the scale (``profiles``, ``tasks``, ``profiles_per_task``,
``image_size``): the same arguments give byte-identical files and the same ``data_hash``, whatever the number of
workers. The output is written to a temporary sibling dir and renamed into place at the end, so an out dir is
either complete or untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from icu_tasks.data import schema, utility
from icu_tasks.data.dataset import data_hash
from icu_tasks.data.longform import longform_row
from icu_tasks.data.plan import DEFAULT_IMAGE_SIZE, GenerateConfig, assign_splits, expected_counts
from icu_tasks.data.profiles import SYNTHETIC_NOTICE, Profile, make_profiles
from icu_tasks.data.questions import ChoicePools, paraphrase_rows, profile_rows
from icu_tasks.data.render import RenderJob, profile_images, render_all
from icu_tasks.errors import ConfigError
from icu_tasks.records.layout import check_parents, follow_umask, write_json
from icu_tasks.records.provenance import package_versions

FORMAT_VERSION = 3  # 2: holdout split, paraphrase file; 3: long-form file

PROFILES_SCHEMA = pa.schema(
    [
        ("profile_id", pa.string()),
        ("index", pa.int32()),
        ("domain", pa.string()),
        ("name", pa.string()),
        ("split", pa.string()),
        ("forget_task", pa.int32()),
        ("specimen", pa.bool_()),
        ("fields", pa.string()),  # JSON: field -> shown value
        ("answers", pa.string()),  # JSON: question key -> answer
        ("boxes", pa.string()),  # JSON: layout -> field -> [x0, y0, x1, y1] (value box; exclusive edges)
        ("images", pa.list_(pa.string())),  # relative paths of every view of this person
    ]
)


def _versions() -> dict[str, str]:
    """Versions of the packages that decide the generated data."""
    return package_versions("icu-bench", "Faker", "Pillow", "pyarrow")


def _render(root: Path, cfg: GenerateConfig, people: list[Profile], workers: int, progress: bool) -> dict:
    """Render every document view and utility specimen; returns profile id -> layout -> field boxes."""
    profiles, specimens = people[: cfg.profiles], people[cfg.profiles :]
    jobs = [RenderJob(p, profile_images(p), cfg.image_size) for p in profiles]
    jobs += [
        RenderJob(
            s,
            {"specimen": utility.specimen_image(s)},
            cfg.image_size,
            specimen_layout=utility.specimen_layout(s),
        )
        for s in specimens
    ]
    return render_all(jobs, root, workers=workers, progress=progress)


def _question_rows(
    profiles: list[Profile], plan: dict[str, tuple[str, int]], cfg: GenerateConfig, progress: bool
) -> tuple[list[dict], list[dict], list[dict]]:
    """(core rows, paraphrase rows, long-form rows) of every profile, in profile order."""
    pools = ChoicePools(profiles, cfg.seed)
    rows: list[dict] = []
    para: list[dict] = []
    longform: list[dict] = []
    for p in tqdm(profiles, desc="questions", unit="profile", disable=not progress, leave=False):
        images = profile_images(p)
        split, task = plan[p.profile_id]
        core = profile_rows(
            p,
            split=split,
            forget_task=task,
            image_of_field={f: images[f"masked_{f}"] for f in schema.FIELDS[p.domain]},
            pools=pools,
            seed=cfg.seed,
        )
        rows += core
        para += paraphrase_rows(p, core)
        longform.append(longform_row(p, split=split, forget_task=task, seed=cfg.seed))
    return rows, para, longform


def _profile_records(people: list[Profile], plan: dict[str, tuple[str, int]], boxes: dict) -> list[dict]:
    """One ``profiles.parquet`` record per person (benchmark profiles and utility specimens)."""
    records = []
    for p in people:
        split, task = plan.get(p.profile_id, ("utility", 0))
        images = profile_images(p) if p.profile_id in plan else {"specimen": utility.specimen_image(p)}
        records.append(
            {
                "profile_id": p.profile_id,
                "index": p.index,
                "domain": p.domain,
                "name": p.name,
                "split": split,
                "forget_task": task,
                "specimen": p.profile_id not in plan,
                "fields": json.dumps(p.fields, sort_keys=True),
                "answers": json.dumps(p.answers, sort_keys=True),
                "boxes": json.dumps(boxes[p.profile_id], sort_keys=True),
                "images": list(images.values()),
            }
        )
    return records


def _by_split(rows: list[dict]) -> dict[str, int]:
    return {s: sum(r["split"] == s for r in rows) for s in schema.SPLITS}


def _build(root: Path, cfg: GenerateConfig, workers: int, progress: bool) -> dict:
    n_spec = utility.n_specimens_per_domain(cfg.profiles)
    people = make_profiles(cfg.profiles // 2, cfg.seed, n_specimens_per_domain=n_spec)
    profiles, specimens = people[: cfg.profiles], people[cfg.profiles :]
    plan = assign_splits(profiles, cfg)
    boxes = _render(root, cfg, people, workers, progress)
    rows, para, longform = _question_rows(profiles, plan, cfg, progress)
    rows += utility.utility_rows(specimens, cfg.seed)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema.QA_SCHEMA), root / schema.QA_FILE)
    pq.write_table(pa.Table.from_pylist(para, schema=schema.PARAPHRASE_SCHEMA), root / schema.PARAPHRASE_FILE)
    pq.write_table(pa.Table.from_pylist(longform, schema=schema.LONGFORM_SCHEMA), root / schema.LONGFORM_FILE)
    records = _profile_records(people, plan, boxes)
    pq.write_table(pa.Table.from_pylist(records, schema=PROFILES_SCHEMA), root / schema.PROFILES_FILE)

    counts = expected_counts(cfg)
    actual_images = sum(1 for _ in (root / schema.IMAGES_DIR).rglob("*.png"))
    if (len(rows), len(para), len(longform), actual_images) != (
        counts["rows_total"],
        counts["paraphrase_rows"],
        counts["longform_rows"],
        counts["images"] + counts["utility_images"],
    ):
        raise RuntimeError(
            f"generator bug: produced {len(rows)} rows / {len(para)} paraphrase rows / {len(longform)} "
            f"long-form rows / {actual_images} "
            f"images, expected {counts}"
        )
    forget_tasks: dict[str, list[str]] = {}
    for p in profiles:
        split, task = plan[p.profile_id]
        if split == "forget":
            forget_tasks.setdefault(str(task), []).append(p.profile_id)
    counts = {
        **counts,
        "rows_by_split": _by_split(rows),
        "paraphrase_rows_by_split": _by_split(para),
        "longform_rows_by_split": _by_split(longform),
    }
    return _manifest(root, cfg, counts, forget_tasks, len(specimens))


def _manifest(
    root: Path, cfg: GenerateConfig, counts: dict, forget_tasks: dict[str, list[str]], n_specimens: int
) -> dict:
    """The manifest of a finished data dir (hashes the files, so it comes last)."""
    return {
        "name": "ICU-Bench",
        "format_version": FORMAT_VERSION,
        "synthetic": True,
        "notice": f"{SYNTHETIC_NOTICE}: every person, record, institution and value in this data set is invented.",
        "seed": cfg.seed,
        "scale": {"profiles": cfg.profiles, "tasks": cfg.tasks, "profiles_per_task": cfg.profiles_per_task},
        "image_size": cfg.image_size,
        "counts": counts,
        "splits": {
            "retain_shares_percent": {s: 10 * share for s, share in schema.RETAIN_SHARES},
            "trained_by_finetune": list(schema.KNOWN_SPLITS),
            "never_trained": [schema.HOLDOUT],
        },
        "paraphrase": {
            "file": schema.PARAPHRASE_FILE,
            "rows": counts["paraphrase_rows"],
            "note": "one held-out rephrasing of every profile question; not in qa.parquet, never trained",
        },
        "longform": {
            "file": schema.LONGFORM_FILE,
            "rows": counts["longform_rows"],
            "note": "one 'Summarise the record of <name>.' row per profile (text only); not in qa.parquet; "
            "trained by the fine-tune unless disabled, never by an unlearning stage",
        },
        "utility": {
            "specimen_documents": n_specimens,
            "specimen_questions": sorted(utility.SPECIMEN_QUESTIONS),
            "public_fact_rows": utility.N_FACT_ROWS,
            "rows": counts["utility_rows"],
        },
        "forget_tasks": {k: sorted(v) for k, v in sorted(forget_tasks.items(), key=lambda kv: int(kv[0]))},
        "files": {
            "qa": schema.QA_FILE,
            "paraphrase": schema.PARAPHRASE_FILE,
            "longform": schema.LONGFORM_FILE,
            "profiles": schema.PROFILES_FILE,
            "images": schema.IMAGES_DIR,
        },
        "versions": _versions(),
        "data_hash": data_hash(root),
    }


def _check_target(out: Path, overwrite: bool) -> None:
    check_parents(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output path {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(
                f"output dir {out} is not empty; pass --overwrite (overwrite=True) to replace it"
            )
        if not (out / schema.MANIFEST_FILE).is_file():
            raise ConfigError(
                f"output dir {out} is not empty and holds no {schema.MANIFEST_FILE}: refusing to replace a dir "
                "that is not an ICU-Bench data dir"
            )


def _install(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` dir to ``out`` (replacing an empty or old data dir)."""
    if not out.exists():
        os.replace(tmp, out)
        return
    if not any(out.iterdir()):
        out.rmdir()
        os.replace(tmp, out)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.replace(out, trash / out.name)
    os.replace(tmp, out)
    shutil.rmtree(trash, ignore_errors=True)


def generate(
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    profiles: int = 1000,
    tasks: int = 100,
    profiles_per_task: int = 5,
    workers: int = 1,
    image_size: int = DEFAULT_IMAGE_SIZE,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Generate a data set into ``out_dir`` and return its manifest (also written as ``manifest.json``).

    Raises :class:`ConfigError` for an invalid scale, ``workers < 1``, or an out dir that exists and is not
    empty (unless ``overwrite``; even then only an existing ICU-Bench data dir is replaced).
    """
    cfg = GenerateConfig(
        seed=seed, profiles=profiles, tasks=tasks, profiles_per_task=profiles_per_task, image_size=image_size
    )
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be an integer >= 1, got {workers!r}")
    out = Path(out_dir).expanduser().absolute()
    _check_target(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    start = time.perf_counter()
    try:
        manifest = _build(tmp, cfg, workers, progress)
        write_json(tmp / schema.MANIFEST_FILE, manifest)
        follow_umask(tmp)
        _install(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest["seconds"] = round(time.perf_counter() - start, 2)  # returned only; not part of the files
    return manifest


__all__ = ["generate"]
