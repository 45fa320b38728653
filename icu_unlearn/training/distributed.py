"""Which process of a distributed (``accelerate launch`` / ``torchrun``) job this is, from its environment.

The one owner of the ``RANK`` / ``WORLD_SIZE`` reads: a job without them is a single process (rank 0 of 1).
Imports no torch, so the CLI can ask before anything heavy is loaded.
"""

from __future__ import annotations

import os


def rank() -> int:
    """Global rank of this process (``RANK``); 0 when not distributed."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Processes of this (``accelerate launch``/``torchrun``) job (``WORLD_SIZE``); 1 when not distributed."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """Whether this is the main process (rank 0), the one that prints results and writes shared files."""
    return rank() == 0
