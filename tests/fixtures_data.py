"""Session fixture ``small_data_dir``: one small generated data set shared by every test layer.

The dir is built once per test session and must be treated as read-only: a test that corrupts or edits data
copies it first (``shutil.copytree(small_data_dir, tmp_path / "x")``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from icu_tasks.data.generate import generate
from tests.shared_build import built_once

#: Scale of the shared small set: 9 medical + 9 labor profiles, 3 forget tasks of 2 profiles
#: (each task one medical + one labor), 12 retain profiles (4 retain_train, 4 retain_eval, 4 holdout: 2 of
#: each per domain). 324 core QA rows (288 profile rows + 36 utility) and 288 paraphrase rows. The vanilla
#: fixture fine-tunes on 14 of the profiles (every split but holdout) until it knows them: the size of this
#: set is what the suite's slowest step costs.
SMALL_SEED = 0
SMALL_PROFILES = 18
SMALL_TASKS = 3
SMALL_PROFILES_PER_TASK = 2
#: Small enough to render the 171 images in about a second, large enough for the masked-box checks
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

    def build(parent: Path) -> Path:
        generate(parent / "icu", workers=1, progress=False, **SMALL_SCALE)
        return parent / "icu"

    return built_once(tmp_path_factory, "icu_data", build)
