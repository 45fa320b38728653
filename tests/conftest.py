"""Shared pytest set-up: session-scoped fixtures live in ``tests/fixtures_*.py`` (one module per layer).

The tiny model, the small data set and the fine-tuned (vanilla) model are built once per test session.
"""

from __future__ import annotations

import importlib.util
import os

# Keep every test hermetic: no hub, no telemetry, no GPU.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

_FIXTURE_MODULES = ("tests.fixtures_data", "tests.fixtures_model", "tests.fixtures_unlearn")
pytest_plugins = [m for m in _FIXTURE_MODULES if importlib.util.find_spec(m) is not None]
