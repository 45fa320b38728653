"""The environment of a subprocess a test starts: hermetic, with every cache under the test's tmp dir.

``lmms-eval`` builds its stub dataset through ``datasets`` (``HF_DATASETS_CACHE``, ``HF_HOME``), the report
draws with matplotlib (``MPLCONFIGDIR``), ``accelerate launch`` reads a default config from ``HF_HOME`` and
torchelastic writes its logs under ``TMPDIR``; none of them may write to (or read a developer's settings from)
the home directory or the shared /tmp.
"""

from __future__ import annotations

import os
from pathlib import Path


def subprocess_env(tmp: Path, **extra: str) -> dict[str, str]:
    """``os.environ`` + offline/CPU settings + every cache dir under ``tmp/cache`` (created), + ``extra``."""
    cache = Path(tmp) / "cache"
    (cache / "tmp").mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        TOKENIZERS_PARALLELISM="false",
        CUDA_VISIBLE_DEVICES="",
        HF_HOME=str(cache / "hf"),
        HF_DATASETS_CACHE=str(cache / "hf" / "datasets"),
        MPLCONFIGDIR=str(cache / "matplotlib"),
        XDG_CACHE_HOME=str(cache / "xdg"),
        TMPDIR=str(cache / "tmp"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(extra)
    return env
