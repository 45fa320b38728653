"""Which process of a distributed (``accelerate launch`` / ``torchrun``) job this is, from its environment.

The one owner of the ``RANK`` / ``WORLD_SIZE`` reads: a job without them is a single process (rank 0 of 1).
Imports no torch, so the CLI can ask before anything heavy is loaded.
"""

from __future__ import annotations

import os

from icu_tasks.errors import ConfigError


def rank() -> int:
    """Global rank of this process (``RANK``); 0 when not distributed."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Processes of this (``accelerate launch``/``torchrun``) job (``WORLD_SIZE``); 1 when not distributed."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """Whether this is the main process (rank 0), the one that prints results and writes shared files."""
    return rank() == 0


def per_device_batch(global_batch: int) -> int:
    """Split the configured (global) batch over the processes, so results do not depend on their number."""
    n = world_size()
    if global_batch % n:
        raise ConfigError(f"batch size {global_batch} is not divisible by the {n} processes")
    return global_batch // n
