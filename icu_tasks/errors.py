"""Exceptions with one-line, user-facing messages.

Every error a user can cause (bad data dir, bad config, unknown name) is raised as an :class:`IcuError`
subclass. The ``icu-bench`` CLI prints ``error: <message>`` on one line and exits with status 2; it never
shows a traceback for these.
"""

from __future__ import annotations


class IcuError(Exception):
    """Base class of all errors caused by user input; ``str(err)`` is the one-line message."""


class DataError(IcuError):
    """The benchmark data on disk is missing, malformed or inconsistent."""


class ConfigError(IcuError):
    """A configuration value, CLI argument or hyper-parameter is invalid."""


class StageError(IcuError):
    """A stage / run directory is missing, incomplete, from another run, or would be overwritten."""
