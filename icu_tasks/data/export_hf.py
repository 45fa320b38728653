"""``icu-bench data export-hf OUT``: the data set as a Hugging Face dataset, images inside.

A data dir keeps each image as a file and ``qa.parquet`` names it by path, so ``load_dataset("parquet")``
would read the rows but ship no pixels. The export is the layout ``push_to_hub`` writes: one parquet file per
split under ``OUT/data/`` with the image bytes in an :class:`datasets.Image` column (``None`` for text-only
rows), and ``OUT/README.md`` whose card names the splits, so that ``datasets.load_dataset(OUT)`` returns a
:class:`datasets.DatasetDict` with the benchmark's splits (``forget``, ``retain_train``, ``retain_eval``,
``holdout``, ``utility``). Forget task ``k`` is the ``forget`` rows with ``forget_task == k``.

``OUT/source/`` is the data dir itself, byte for byte (parquet files, manifest, every image): what the lmms-eval
tasks, the fine-tune and the unlearning stages read, so a model trained on the original data recognises the
export by its data hash. :func:`icu_tasks.data.dataset.open_data` accepts the export dir in place of a data
dir (``ICU_DATA_DIR=OUT``, ``--data OUT``). Upload the whole folder (``huggingface-cli upload --repo-type
dataset REPO OUT``) and a download of the repository is a data dir again.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from icu_tasks.data import schema
from icu_tasks.data.dataset import SOURCE_DIR, open_data
from icu_tasks.errors import ConfigError
from icu_tasks.records.layout import check_parents, follow_umask

CARD = """---
configs:
- config_name: default
  data_files:
{files}
---
# ICU-Bench QA ({profiles} fictional profiles, data_hash {data_hash})

Synthetic, fictional private documents and their questions, exported by `icu-bench data export-hf` from
an ICU-Bench data dir (seed {seed}). Splits: {splits}. Forget task k is the `forget` rows with
`forget_task == k`; `view` is `vqa` (question about the `image`) or `qa` (text only, `image` is None).
`source/` is the ICU-Bench data dir itself (paraphrase and long-form rows, profiles, every image): point
`ICU_DATA_DIR` (or `--data`) at a download of this repository to run the benchmark's lmms-eval tasks on it.
"""


def export_hf(
    data_dir: str | os.PathLike | None, out: str | os.PathLike, overwrite: bool = False
) -> dict[str, int]:
    """Write the data dir's core QA rows to ``out`` as a Hugging Face dataset; returns rows per split.

    The data dir is validated first (:func:`icu_tasks.data.dataset.open_data`); ``out`` must not exist or be
    empty unless ``overwrite``. Written under a temp name and renamed, so ``out`` is complete or absent.
    """
    from datasets import Dataset, Features, Image, disable_progress_bars, enable_progress_bars
    from datasets.utils.logging import is_progress_bar_enabled

    out = Path(out).expanduser().absolute()
    check_parents(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not overwrite)):
        raise ConfigError(f"output {out} exists and is not an empty dir; pass --overwrite to replace it")
    data = open_data(data_dir)
    features = Features.from_arrow_schema(data.table.schema)
    features["image"] = Image()
    counts: dict[str, int] = {}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    bars = is_progress_bar_enabled()
    disable_progress_bars()  # one bar per split file would drown the summary line
    try:
        (tmp / "data").mkdir()
        for split in schema.SPLITS:
            rows = [_with_image(row, data.root) for row in data.rows(split=split)]
            Dataset.from_list(rows, features=features).to_parquet(str(tmp / "data" / f"{split}.parquet"))
            counts[split] = len(rows)
        (tmp / "README.md").write_text(_card(data.manifest, counts), encoding="utf-8")
        shutil.copytree(data.root, tmp / SOURCE_DIR)
        follow_umask(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if bars:
            enable_progress_bars()
    return counts


def _with_image(row: dict[str, Any], root: Path) -> dict[str, Any]:
    rel = row["image"]
    image = None if rel is None else {"bytes": (root / rel).read_bytes(), "path": rel}
    return row | {"image": image}


def _card(manifest: dict[str, Any], counts: dict[str, int]) -> str:
    files = "\n".join(f"  - split: {s}\n    path: data/{s}.parquet" for s in counts)
    return CARD.format(
        files=files,
        profiles=manifest["counts"]["profiles"],
        data_hash=manifest["data_hash"],
        seed=manifest["seed"],
        splits=", ".join(f"{s} ({n} rows)" for s, n in counts.items()),
    )
