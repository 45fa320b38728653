"""Exceptions with one-line, user-facing messages.

Every error a user can cause (bad data dir, bad config, unknown name) is raised as an :class:`IcuError`
subclass. The ``icu-bench`` CLI prints ``error: <message>`` on one line and exits with status 2; it never
shows a traceback for these. Failures of the machine rather than of the input (a full or read-only disk) are
recognised by :func:`environment_message`; the CLI prints those on one line too (status 2).
"""

from __future__ import annotations

import difflib
import errno
import os
from collections.abc import Iterable


class IcuError(Exception):
    """Base class of all errors caused by user input; ``str(err)`` is the one-line message."""


class DataError(IcuError):
    """The benchmark data on disk is missing, malformed or inconsistent."""


class ConfigError(IcuError):
    """A configuration value, CLI argument or hyper-parameter is invalid."""


class TrainingError(IcuError):
    """A training run ended without reaching its stated goal (e.g. the fine-tune's stopping rule)."""


class StageError(IcuError):
    """A stage / run directory is missing, incomplete, from another run, or would be overwritten."""


#: errno values that describe the machine (full or read-only disk, permissions, quotas), not a program bug.
ENVIRONMENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
)


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """The hint an "unknown name" message ends with: ``"; did you mean 'x'?"`` naming the closest of
    ``known``, or ``""`` when none is close (:func:`difflib.get_close_matches`, default cutoff 0.6).

    Every "unknown method / task / hyper-parameter / model_arg" error builds its hint here, so they all
    read alike.
    """
    close = difflib.get_close_matches(str(name), sorted(known), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def environment_message(err: BaseException) -> str | None:
    """A one-line message when ``err`` is a failure of the machine (disk full, read-only, no permission).

    Covers ``OSError`` with one of :data:`ENVIRONMENT_ERRNOS` and safetensors' ``SafetensorError`` wrapping an
    OS error (it raises its own type, not ``OSError``, when the disk fills up while it writes). Returns
    ``None`` for anything else (a bug keeps its traceback).
    """
    if isinstance(err, OSError) and err.errno in ENVIRONMENT_ERRNOS:
        text = err.strerror or os.strerror(err.errno)
        return f"{text}: {err.filename}" if err.filename else text
    if type(err).__name__ == "SafetensorError" and "os error" in str(err).lower():
        lines = str(err).strip().splitlines()
        return lines[0] if lines else type(err).__name__
    return None
