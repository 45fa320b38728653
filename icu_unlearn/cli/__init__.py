"""``icu-bench``: one console script; each sub-command lives in the module that owns the work.

A module contributes commands through ``register(subparsers)``, which adds its parsers and sets
``func=<callable(args) -> int | None>`` on each. Modules are imported lazily so that ``icu-bench data ...``
never imports torch. Errors a user can cause (:class:`icu_tasks.errors.IcuError`) and failures of the machine
(disk full, read-only dir: :func:`icu_tasks.errors.environment_message`) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import NoReturn

from icu_tasks.errors import IcuError, environment_message
from icu_tasks.records.files import icu_bench_version

#: Modules that contribute sub-commands, in the order they appear in ``--help``.
COMMAND_MODULES: tuple[str, ...] = (
    "icu_tasks.data.cli",
    "icu_tasks.harness.cli",
    "icu_unlearn.cli.model",
    "icu_unlearn.cli.train",
    "icu_unlearn.cli.sweep",
    "icu_unlearn.cli.run",
    "icu_unlearn.cli.compare",
    "icu_unlearn.cli.attack",
    "icu_tasks.report.cli",
)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one ``error:`` line (exit 2), like every other refusal."""

    def error(self, message: str) -> NoReturn:
        """Print ``error: PROG: MESSAGE (see PROG --help)`` and exit 2."""
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full ``icu-bench`` argument parser (``-q``/``-v`` accepted before or after the command)."""
    parser = OneLineParser(
        prog="icu-bench", description="ICU-Bench: continual unlearning benchmark for multimodal LLMs."
    )
    parser.add_argument("--version", action="version", version=f"icu-bench {icu_bench_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # a command module that does not exist yet
                continue
            raise
        module.register(sub)
    _add_verbosity(parser, top=True)
    return parser


def _add_verbosity(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """``-q/--quiet`` and ``-v/--verbose`` on ``parser`` and every sub-command under it."""
    default = 0 if top else argparse.SUPPRESS  # a sub-command's flag must not reset the top-level one
    if "--quiet" not in parser._option_string_actions:
        parser.add_argument(
            "-q",
            "--quiet",
            action="store_true",
            default=default,
            help="warnings and errors only; no progress bars",
        )
    parser.add_argument(
        "-v", "--verbose", action="count", default=default, help="debug logging (lmms-eval, transformers)"
    )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                _add_verbosity(child)


#: The environment variables :func:`set_verbosity` sets (restored when :func:`main` returns).
VERBOSITY_ENV = (
    "LOGURU_LEVEL",
    "TRANSFORMERS_VERBOSITY",
    "DATASETS_VERBOSITY",
    "TQDM_DISABLE",
    "HF_DATASETS_DISABLE_PROGRESS_BARS",
)


def set_verbosity(quiet: bool, verbose: int) -> None:
    """Set the log levels of lmms-eval (loguru), transformers and datasets, and tqdm's bars, through their
    environment variables (read when those libraries are imported, i.e. after this): INFO by default (no
    DEBUG lines), WARNING and no progress bars with ``quiet``, DEBUG with ``verbose``."""
    level = "DEBUG" if verbose else "WARNING" if quiet else "INFO"
    os.environ["LOGURU_LEVEL"] = level
    os.environ["TRANSFORMERS_VERBOSITY"] = {"DEBUG": "info", "WARNING": "error", "INFO": "warning"}[level]
    os.environ["DATASETS_VERBOSITY"] = {"DEBUG": "info", "WARNING": "error", "INFO": "warning"}[level]
    if verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
    if quiet and not verbose:
        os.environ["TQDM_DISABLE"] = "1"
        os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"


def _register_method_paths(argv: list[str]) -> None:
    """A ``--method module:Class`` names a method outside the registry: register it before the parser is
    built, so that its hyper-parameter flags exist."""
    values = [v for flag, v in zip(argv, argv[1:], strict=False) if flag == "--method"]
    values += [a.split("=", 1)[1] for a in argv if a.startswith("--method=")]
    if any(":" in v for v in values):
        from icu_unlearn.methods import get_method

        for value in values:
            get_method(value)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``icu-bench`` console script; returns the process exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:  # the parser lists the methods: a method path or plugin that does not import fails here
        _register_method_paths(argv)
        parser = build_parser()
    except IcuError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    saved = {key: os.environ.get(key) for key in VERBOSITY_ENV}
    try:
        set_verbosity(bool(getattr(args, "quiet", False)), int(getattr(args, "verbose", 0)))
        status = func(args)
    except IcuError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        message = environment_message(err)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    finally:  # main() called in-process (a pipeline, the tests) leaves the caller's environment as it was
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return int(status or 0)
