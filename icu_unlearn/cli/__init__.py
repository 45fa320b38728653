"""``icu-bench``: one console script; each sub-command lives in the module that owns the work.

A module contributes commands through ``register(subparsers)``, which adds its parsers and sets
``func=<callable(args) -> int | None>`` on each. Modules are imported lazily so that ``icu-bench data ...``
never imports torch. Errors a user can cause (:class:`icu_tasks.errors.IcuError`) and failures of the machine
(disk full, read-only dir: :func:`icu_tasks.errors.environment_message`) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

from icu_tasks.errors import IcuError, environment_message

#: Modules that contribute sub-commands, in the order they appear in ``--help``.
COMMAND_MODULES: tuple[str, ...] = (
    "icu_tasks.data.cli",
    "icu_tasks.harness.cli",
    "icu_unlearn.cli.model",
    "icu_unlearn.cli.train",
    "icu_unlearn.cli.sweep",
    "icu_unlearn.cli.run",
    "icu_tasks.report.cli",
)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one ``error:`` line (exit 2), like every other refusal."""

    def error(self, message: str) -> NoReturn:
        """Print ``error: PROG: MESSAGE (see PROG --help)`` and exit 2."""
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full ``icu-bench`` argument parser."""
    parser = OneLineParser(
        prog="icu-bench", description="ICU-Bench: continual unlearning benchmark for multimodal LLMs."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # a command module that does not exist yet
                continue
            raise
        module.register(sub)
    return parser


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
    try:
        _register_method_paths(argv)
    except IcuError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
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
    return int(status or 0)
