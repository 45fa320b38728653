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
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from icu_tasks.data import schema, utility
from icu_tasks.data.dataset import data_hash
from icu_tasks.data.profiles import SYNTHETIC_NOTICE, Profile, make_profiles
from icu_tasks.data.questions import ChoicePools, profile_rows, row_rng
from icu_tasks.data.render import BASE, RenderJob, profile_images, render_all
from icu_tasks.errors import ConfigError
from icu_tasks.provenance import package_versions

DEFAULT_IMAGE_SIZE = BASE  # 448 px: readable by real VLMs; the portrait is ~144 px (~20 px at 64 px input)
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 96, 2048
MAX_PROFILES = 20_000
FORMAT_VERSION = 1

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


@dataclass
class GenerateConfig:
    """Scale and seed of a generation run; invalid values raise :class:`ConfigError` on construction."""

    seed: int = 0
    profiles: int = 1000
    tasks: int = 100
    profiles_per_task: int = 5
    image_size: int = DEFAULT_IMAGE_SIZE

    def __post_init__(self) -> None:
        for name in ("seed", "profiles", "tasks", "profiles_per_task", "image_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if self.profiles < 4 or self.profiles % 2 or self.profiles > MAX_PROFILES:
            raise ConfigError(
                f"profiles must be an even number (half medical, half labor) between 4 and {MAX_PROFILES}, "
                f"got {self.profiles}"
            )
        if self.tasks < 1 or self.profiles_per_task < 1:
            raise ConfigError(
                f"tasks and profiles_per_task must be >= 1, got tasks={self.tasks}, "
                f"profiles_per_task={self.profiles_per_task}"
            )
        if self.forget_profiles > self.profiles - 2:
            raise ConfigError(
                f"tasks x profiles_per_task = {self.forget_profiles} forget profiles must leave at least 2 of the "
                f"{self.profiles} profiles as retain profiles; lower --tasks or --profiles-per-task"
            )
        if not MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE:
            raise ConfigError(
                f"image_size must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} px, got {self.image_size}"
            )

    @property
    def forget_profiles(self) -> int:
        """Profiles in all forget tasks together."""
        return self.tasks * self.profiles_per_task


def expected_counts(cfg: GenerateConfig) -> dict[str, int]:
    """What a generation at this scale produces, from the schema arithmetic alone (nothing is generated)."""
    per_domain = cfg.profiles // 2
    retain = cfg.profiles - cfg.forget_profiles
    forget_med = (cfg.forget_profiles + 1) // 2  # forget profiles alternate medical, labor, medical, ...
    retain_med, retain_lab = per_domain - forget_med, per_domain - (cfg.forget_profiles - forget_med)
    retain_train = (retain_med + 1) // 2 + retain_lab // 2
    specimens = utility.n_specimens_per_domain(cfg.profiles)
    qa = per_domain * sum(schema.qa_per_profile(d) for d in schema.DOMAINS)
    util = utility.utility_rows_count(cfg.profiles)
    return {
        "profiles": cfg.profiles,
        "profiles_medical": per_domain,
        "profiles_labor": per_domain,
        "forget_tasks": cfg.tasks,
        "profiles_per_task": cfg.profiles_per_task,
        "forget_profiles": cfg.forget_profiles,
        "retain_profiles": retain,
        "retain_train_profiles": retain_train,
        "retain_eval_profiles": retain - retain_train,
        "images": per_domain * sum(schema.images_per_profile(d) for d in schema.DOMAINS),
        "utility_images": specimens * len(schema.DOMAINS),
        "utility_specimens": specimens * len(schema.DOMAINS),
        "qa_rows": qa,
        "utility_rows": util,
        "rows_total": qa + util,
    }


def assign_splits(profiles: list[Profile], cfg: GenerateConfig) -> dict[str, tuple[str, int]]:
    """profile id -> (split, forget task) for every profile.

    Forget profiles are drawn alternately from the two shuffled domains and cut into consecutive tasks, so
    each task is balanced (or off by one) between medical and labor. The rest are split per domain into
    retain_train / retain_eval halves (an odd medical remainder goes to train, an odd labor one to eval).
    """
    rng = row_rng(cfg.seed, "splits")
    pools = {d: [p.profile_id for p in profiles if p.domain == d] for d in schema.DOMAINS}
    for ids in pools.values():
        rng.shuffle(ids)
    plan: dict[str, tuple[str, int]] = {}
    taken = {d: 0 for d in schema.DOMAINS}
    for i in range(cfg.forget_profiles):
        domain = schema.DOMAINS[i % 2]
        plan[pools[domain][taken[domain]]] = ("forget", i // cfg.profiles_per_task + 1)
        taken[domain] += 1
    for d, ids in pools.items():
        rest = ids[taken[d] :]
        n_train = (len(rest) + 1) // 2 if d == schema.DOMAINS[0] else len(rest) // 2
        for j, pid in enumerate(rest):
            plan[pid] = ("retain_train" if j < n_train else "retain_eval", 0)
    return plan


def _versions() -> dict[str, str]:
    """Versions of the packages that decide the generated data."""
    return package_versions("icu-bench", "Faker", "Pillow", "pyarrow")


def _build(root: Path, cfg: GenerateConfig, workers: int, progress: bool) -> dict:
    n_spec = utility.n_specimens_per_domain(cfg.profiles)
    people = make_profiles(cfg.profiles // 2, cfg.seed, n_specimens_per_domain=n_spec)
    profiles, specimens = people[: cfg.profiles], people[cfg.profiles :]
    plan = assign_splits(profiles, cfg)

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
    boxes = render_all(jobs, root, workers=workers, progress=progress)

    pools = ChoicePools(profiles, cfg.seed)
    rows: list[dict] = []
    for p in tqdm(profiles, desc="questions", unit="profile", disable=not progress, leave=False):
        images = profile_images(p)
        split, task = plan[p.profile_id]
        rows += profile_rows(
            p,
            split=split,
            forget_task=task,
            image_of_field={f: images[f"masked_{f}"] for f in schema.FIELDS[p.domain]},
            pools=pools,
            seed=cfg.seed,
        )
    rows += utility.utility_rows(specimens, cfg.seed)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema.QA_SCHEMA), root / schema.QA_FILE)

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
    pq.write_table(pa.Table.from_pylist(records, schema=PROFILES_SCHEMA), root / schema.PROFILES_FILE)

    counts = expected_counts(cfg)
    by_split = {s: sum(r["split"] == s for r in rows) for s in schema.SPLITS}
    actual_images = sum(1 for _ in (root / schema.IMAGES_DIR).rglob("*.png"))
    if len(rows) != counts["rows_total"] or actual_images != counts["images"] + counts["utility_images"]:
        raise RuntimeError(
            f"generator bug: produced {len(rows)} rows / {actual_images} images, expected {counts}"
        )
    forget_tasks: dict[str, list[str]] = {}
    for p in profiles:
        split, task = plan[p.profile_id]
        if split == "forget":
            forget_tasks.setdefault(str(task), []).append(p.profile_id)
    return {
        "name": "ICU-Bench",
        "format_version": FORMAT_VERSION,
        "synthetic": True,
        "notice": f"{SYNTHETIC_NOTICE}: every person, record, institution and value in this data set is invented.",
        "seed": cfg.seed,
        "scale": {"profiles": cfg.profiles, "tasks": cfg.tasks, "profiles_per_task": cfg.profiles_per_task},
        "image_size": cfg.image_size,
        "counts": {**counts, "rows_by_split": by_split},
        "utility": {
            "specimen_documents": len(specimens),
            "specimen_questions": sorted(utility.SPECIMEN_QUESTIONS),
            "public_fact_rows": utility.N_FACT_ROWS,
            "rows": counts["utility_rows"],
        },
        "forget_tasks": {k: sorted(v) for k, v in sorted(forget_tasks.items(), key=lambda kv: int(kv[0]))},
        "files": {"qa": schema.QA_FILE, "profiles": schema.PROFILES_FILE, "images": schema.IMAGES_DIR},
        "versions": _versions(),
        "data_hash": data_hash(root),
    }


def _check_target(out: Path, overwrite: bool) -> None:
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
        with open(tmp / schema.MANIFEST_FILE, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=2, sort_keys=True)
            fh.write("\n")
        _install(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest["seconds"] = round(time.perf_counter() - start, 2)  # returned only; not part of the files
    return manifest


__all__ = [
    "GenerateConfig",
    "DEFAULT_IMAGE_SIZE",
    "assign_splits",
    "expected_counts",
    "generate",
]
