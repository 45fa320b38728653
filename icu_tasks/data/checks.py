"""The checks behind :func:`icu_tasks.data.dataset.open_data`: manifest, parquet columns, rows, split
membership, images, manifest counts and the paraphrase file. Each raises a one-line :class:`DataError`.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from icu_tasks.data import schema
from icu_tasks.errors import DataError

HOW_TO_GENERATE = "generate one with `icu-bench data generate --out DIR`"


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name when empty)."""
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def read_manifest(root: Path) -> dict:
    path = root / schema.MANIFEST_FILE
    if not path.is_file():
        raise DataError(f"{root} has no {schema.MANIFEST_FILE}: not an ICU-Bench data dir; {HOW_TO_GENERATE}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path} is not valid JSON ({first_line(err)})") from err
    if not isinstance(manifest, dict):
        raise DataError(f"{path} must hold a JSON object")
    for key in ("seed", "scale", "counts", "data_hash"):
        if key not in manifest:
            raise DataError(f"{path} lacks the key {key!r}")
    return manifest


def read_parquet(path: Path, what: str) -> pa.Table:
    if not path.is_file():
        raise DataError(f"{what} {path} is missing")
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as err:
        raise DataError(f"{what} {path} is not a readable parquet file ({first_line(err)})") from err


def check_columns(table: pa.Table, path: Path, expected: pa.Schema = schema.QA_SCHEMA) -> None:
    for f in expected:
        if f.name not in table.schema.names:
            raise DataError(f"{path.name}: column {f.name!r} is missing")
        actual = table.schema.field(f.name).type
        if actual != f.type:
            raise DataError(f"{path.name}: column {f.name!r} has type {actual}, expected {f.type}")
    extra = [n for n in table.schema.names if n not in expected.names]
    if extra:
        raise DataError(f"{path.name}: unexpected column {extra[0]!r} (expected exactly {expected.names})")
    for f in expected:
        if f.name != "image" and table.column(f.name).null_count:
            raise DataError(
                f"{path.name}: column {f.name!r} has {table.column(f.name).null_count} null values"
            )


def check_row(row: dict) -> None:
    rid = row["id"]
    for col, allowed in (("domain", schema.DOMAINS), ("view", schema.VIEWS), ("split", schema.SPLITS)):
        if row[col] not in allowed:
            raise DataError(f"row {rid!r} has unknown {col} {row[col]!r} (expected one of {list(allowed)})")
    if (row["view"] in schema.IMAGE_VIEWS) != (row["image"] is not None):
        raise DataError(
            f"row {rid!r} ({row['view']} view) "
            + ("has no image" if row["view"] in schema.IMAGE_VIEWS else "has an image")
        )
    if (row["split"] == "forget") != (row["forget_task"] >= 1) or row["forget_task"] < 0:
        raise DataError(f"row {rid!r} has split {row['split']!r} but forget_task {row['forget_task']}")
    if len(row["choices"]) != schema.N_CHOICES or len(set(row["choices"])) != schema.N_CHOICES:
        raise DataError(
            f"row {rid!r} has {len(set(row['choices']))} distinct choices, expected {schema.N_CHOICES}"
        )
    if row["answer"] not in row["choices"]:
        raise DataError(f"row {rid!r}: its answer {row['answer']!r} is not among its choices")


def check_membership(rows: list[dict]) -> list[int]:
    """Each profile sits in exactly one split / forget task; returns the sorted forget task ids."""
    home: dict[str, tuple[str, int]] = {}
    for row in rows:
        if row["split"] == "utility":
            continue
        where = (row["split"], row["forget_task"])
        seen = home.setdefault(row["profile_id"], where)
        if seen != where:
            (s1, t1), (s2, t2) = sorted([seen, where])
            if s1 == s2 == "forget":
                raise DataError(
                    f"forget tasks {t1} and {t2} overlap: profile {row['profile_id']!r} is in both"
                )
            a = f"forget task {t1}" if s1 == "forget" else s1
            b = f"forget task {t2}" if s2 == "forget" else s2
            why = " (a holdout profile must be in no other split)" if schema.HOLDOUT in (s1, s2) else ""
            raise DataError(f"profile {row['profile_id']!r} is in both {a} and {b}{why}")
    return sorted({t for s, t in home.values() if s == "forget"})


def check_images(root: Path, rows: list[dict]) -> int:
    images: dict[str, str] = {}
    for row in rows:
        if row["image"] is not None:
            images.setdefault(row["image"], row["id"])
    for rel, rid in images.items():
        parts = rel.replace("\\", "/").split("/")
        if os.path.isabs(rel) or ".." in parts:
            raise DataError(f"row {rid!r}: image path {rel!r} must be relative and inside the data dir")
        if not os.path.isfile(os.path.join(root, rel)):
            raise DataError(f"image file {rel} (row {rid!r}) is missing from {root}")
    return len(images)


def check_image_files(root: Path) -> int:
    """Every PNG under ``root/images`` must decode (PIL's ``verify``: chunk structure and CRCs, no pixels
    kept); a truncated or damaged file is a :class:`DataError` naming it. Returns the number checked."""
    from PIL import Image, UnidentifiedImageError

    paths = sorted((root / schema.IMAGES_DIR).rglob("*.png"))
    for path in paths:
        try:
            with Image.open(path) as img:
                img.verify()
        except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as err:
            rel = path.relative_to(root).as_posix()
            raise DataError(f"image file {rel} in {root} is not a readable PNG ({first_line(err)})") from None
    return len(paths)


def check_promised_images(root: Path, profiles: pa.Table, manifest: dict) -> None:
    """Every image ``profiles.parquet`` lists (full layouts and utility specimens too) must exist.

    The QA rows reference only the masked views; the full layouts are part of the data set (and of its
    hash) as well, so a missing one is a damaged data dir even without ``--hash``. The number of listed
    images must be the manifest's ``counts.images + counts.utility_images`` when the manifest has them.
    """
    if "images" not in profiles.schema.names:
        raise DataError(f"{schema.PROFILES_FILE}: column 'images' is missing")
    listed = {rel for images in profiles.column("images").to_pylist() for rel in images or []}
    counts = manifest.get("counts") if isinstance(manifest.get("counts"), dict) else {}
    promised = [counts.get("images"), counts.get("utility_images")]
    if all(isinstance(n, int) for n in promised) and len(listed) != sum(promised):
        raise DataError(
            f"{schema.PROFILES_FILE} lists {len(listed)} images, the manifest promises {sum(promised)} "
            f"({promised[0]} documents + {promised[1]} utility specimens)"
        )
    for rel in sorted(listed):
        parts = rel.replace("\\", "/").split("/")
        if os.path.isabs(rel) or ".." in parts:
            raise DataError(
                f"{schema.PROFILES_FILE}: image path {rel!r} must be relative and inside the data dir"
            )
        if not os.path.isfile(os.path.join(root, rel)):
            raise DataError(f"image file {rel} (listed in {schema.PROFILES_FILE}) is missing from {root}")


def check_manifest(manifest: dict, rows: list[dict], task_ids: list[int], n_profiles: int) -> None:
    counts = manifest["counts"]
    n_tasks = manifest["scale"].get("tasks") if isinstance(manifest["scale"], dict) else None
    if not isinstance(counts, dict) or not isinstance(n_tasks, int):
        raise DataError("manifest.json: 'counts' and 'scale.tasks' are malformed")
    expected = list(range(1, n_tasks + 1))
    for k in expected:
        if k not in task_ids:
            raise DataError(f"forget task {k} has no rows (the manifest lists tasks 1..{n_tasks})")
    extra = [k for k in task_ids if k not in expected]
    if extra:
        raise DataError(f"forget task {extra[0]} is not in the manifest (which lists tasks 1..{n_tasks})")
    by_split = Counter(r["split"] for r in rows)
    actual = {"rows_total": len(rows), "profiles": n_profiles, "forget_tasks": len(task_ids)}
    actual.update({f"rows_by_split.{s}": by_split.get(s, 0) for s in schema.SPLITS})
    claimed = {k: counts.get(k) for k in ("rows_total", "profiles", "forget_tasks")}
    # A split the manifest does not list has no rows (format-1 manifests predate the holdout split).
    claimed.update(
        {f"rows_by_split.{s}": (counts.get("rows_by_split") or {}).get(s, 0) for s in schema.SPLITS}
    )
    for key, value in actual.items():
        if claimed[key] != value:
            raise DataError(
                f"manifest count mismatch: manifest says {key} = {claimed[key]}, the data has {value}"
            )


def _extra_rows(
    path: Path, manifest: dict, count_key: str, what: str, expected: pa.Schema
) -> list[dict] | None:
    """The rows of a file outside the core rows (paraphrase, long-form): ``None`` when neither the manifest
    counts it nor the file exists; else read, columns checked, and the row count equal to the manifest's."""
    counts = manifest["counts"]
    promised = counts.get(count_key) if isinstance(counts, dict) else None
    if promised is None and not path.is_file():
        return None
    table = read_parquet(path, what)
    check_columns(table, path, expected)
    rows = table.to_pylist()
    if promised is not None and len(rows) != promised:
        raise DataError(
            f"manifest count mismatch: manifest says {count_key} = {promised}, the data has {len(rows)}"
        )
    return rows


def load_paraphrases(root: Path, manifest: dict, core: list[dict]) -> list[dict]:
    """The rows of the paraphrase file, checked against the core rows they rephrase.

    Required when the manifest counts paraphrase rows (format 2); a data dir without either has none.
    Each row must copy its core row (``core_id``) except ``id``, ``question``, ``phrasing`` and ``core_id``,
    must ask it in other words, and must not reuse a core id.
    """
    rows = _extra_rows(
        root / schema.PARAPHRASE_FILE,
        manifest,
        "paraphrase_rows",
        "paraphrase file",
        schema.PARAPHRASE_SCHEMA,
    )
    if rows is None:
        return []
    by_id = {r["id"]: r for r in core}
    seen: set[str] = set()
    same = [c for c in schema.QA_SCHEMA.names if c not in ("id", "question")]
    for row in rows:
        rid, core_row = row["id"], by_id.get(row["core_id"])
        if rid in by_id or rid in seen:
            raise DataError(f"{schema.PARAPHRASE_FILE}: duplicate id {rid!r} (also a core or paraphrase id)")
        seen.add(rid)
        if row["phrasing"] != schema.PARAPHRASE:
            raise DataError(f"{schema.PARAPHRASE_FILE}: row {rid!r} has phrasing {row['phrasing']!r}")
        if core_row is None or core_row["split"] == "utility":
            raise DataError(
                f"{schema.PARAPHRASE_FILE}: row {rid!r} rephrases no profile row ({row['core_id']!r})"
            )
        differ = [c for c in same if row[c] != core_row[c]]
        if differ:
            raise DataError(
                f"{schema.PARAPHRASE_FILE}: row {rid!r} differs from its core row in {differ[0]!r}"
            )
        if row["question"].strip() == core_row["question"].strip():
            raise DataError(f"{schema.PARAPHRASE_FILE}: row {rid!r} asks its core question verbatim")
    return rows


def load_longform(root: Path, manifest: dict, core: list[dict]) -> list[dict]:
    """The rows of the long-form file, checked against the profiles of the core rows.

    Required when the manifest counts long-form rows (format 3); a data dir without either has none. One row
    per profile (id ``<profile>-longform``), with the split, forget task and domain of that profile's core
    rows, ``phrasing`` / ``field`` = ``longform``, text only, and an answer that states every private value
    of the profile (``values``: the answers of its core QA rows, in ``schema.QUESTIONS`` order).
    """
    rows = _extra_rows(
        root / schema.LONGFORM_FILE, manifest, "longform_rows", "long-form file", schema.LONGFORM_SCHEMA
    )
    if rows is None:
        return []
    profiles: dict[str, dict] = {}
    for r in core:
        if r["split"] != "utility" and r["view"] == "qa":
            profiles.setdefault(r["profile_id"], {"row": r, "answers": {}})["answers"][r["field"]] = r[
                "answer"
            ]
    seen: set[str] = set()
    for row in rows:
        _check_longform_row(row, profiles, seen)
    if len(seen) != len(profiles):
        missing = sorted(set(profiles) - seen)[0]
        raise DataError(f"{schema.LONGFORM_FILE}: profile {missing!r} has no long-form row")
    return rows


def _check_longform_row(row: dict, profiles: dict[str, dict], seen: set[str]) -> None:
    rid, pid = row["id"], row["profile_id"]
    where = f"{schema.LONGFORM_FILE}: row {rid!r}"
    prof = profiles.get(pid)
    if prof is None:
        raise DataError(f"{where} is about no profile of {schema.QA_FILE} ({pid!r})")
    if pid in seen or rid != f"{pid}-{schema.LONGFORM}":
        raise DataError(f"{where}: one row per profile with id '<profile>-{schema.LONGFORM}'")
    seen.add(pid)
    core = prof["row"]
    for col in ("domain", "split", "forget_task"):
        if row[col] != core[col]:
            raise DataError(f"{where} differs from its profile's rows in {col!r}")
    if (row["phrasing"], row["field"], row["view"], row["image"]) != (
        schema.LONGFORM,
        schema.LONGFORM,
        "qa",
        None,
    ):
        raise DataError(f"{where} is not a text-only long-form row (phrasing/field/view/image)")
    if not isinstance(row["question"], str) or not row["question"].strip():
        raise DataError(f"{where} has no question text")
    expected = [prof["answers"].get(key) for key, _ in schema.QUESTIONS[row["domain"]]]
    if list(row["values"] or []) != expected:
        raise DataError(f"{where}: 'values' are not the private values of {pid!r}")
    absent = [v for v in expected if v not in (row["answer"] or "")]
    if absent:
        raise DataError(f"{where}: the answer does not state the value {absent[0]!r}")
