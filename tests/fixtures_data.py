"""Session fixture ``small_data_dir``: one small generated data set shared by every test layer.

The dir is built once per test session and must be treated as read-only: a test that corrupts or edits data
copies it first (``shutil.copytree(small_data_dir, tmp_path / "x")``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from icu_tasks.data.generate import generate

#: Scale of the shared small set: 12 medical + 12 labor profiles, 3 forget tasks of 2 profiles
#: (each task one medical + one labor), 18 retain profiles (6 retain_train, 6 retain_eval, 6 holdout: 3 of
#: each per domain). 420 core QA rows (384 profile rows + 36 utility) and 384 paraphrase rows.
SMALL_SEED = 0
SMALL_PROFILES = 24
SMALL_TASKS = 3
SMALL_PROFILES_PER_TASK = 2
#: Small enough to render the 230 images in about a second, large enough for the masked-box checks
#: (value text is ~5 px high at this size).
SMALL_IMAGE_SIZE = 160
SMALL_SCALE = {
    "seed": SMALL_SEED,
    "profiles": SMALL_PROFILES,
    "tasks": SMALL_TASKS,
    "profiles_per_task": SMALL_PROFILES_PER_TASK,
    "image_size": SMALL_IMAGE_SIZE,
}


@pytest.fixture(scope="session")
def small_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of the shared small data set (read-only: copy it before changing anything)."""
    root = tmp_path_factory.mktemp("icu_data") / "icu"
    generate(root, workers=1, progress=False, **SMALL_SCALE)
    return root
