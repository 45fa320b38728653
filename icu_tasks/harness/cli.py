"""``icu-bench tasks-path`` and ``icu-bench tasks install|uninstall|status``: lmms-eval finds the ICU tasks.

Two ways, pick one:

    icu-bench tasks install     # once (make install does it); then plain `lmms-eval --tasks icu ...` works
    lmms-eval --include_path "$(icu-bench tasks-path)" --tasks icu --model icu_hf --model_args pretrained=DIR

(lmms-eval 0.7.3 builds its task index before it reads ``LMMS_EVAL_PLUGINS``, so without the install
``--include_path`` is the way to add the ICU tasks from the CLI; from Python use
``TaskManager(include_path=task_yamls_dir())``.) ``install`` links the task files into a sub-folder of
lmms-eval's own task folder (:mod:`icu_tasks.harness.install`); ``uninstall`` removes exactly that.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from icu_tasks.errors import ConfigError
from icu_tasks.harness import install as installer
from icu_tasks.harness.torchvision_check import check_torchvision
from icu_tasks.paths import task_yamls_dir


def _warn_torchvision() -> None:
    """One ``warning:`` line on stderr when torchvision does not fit torch: lmms-eval would stop on import."""
    try:
        check_torchvision()
    except ConfigError as err:
        print(f"warning: lmms-eval will fail to import: {err}", file=sys.stderr)


def _tasks_path(args: argparse.Namespace) -> int:
    _warn_torchvision()
    path = task_yamls_dir()
    if not path.is_dir():
        raise ConfigError(
            f"the task YAML folder {path} is missing; reinstall icu-bench from a source checkout"
        )
    print(path)
    return 0


def _target(args: argparse.Namespace) -> Path | None:
    if args.target is None:
        return None
    target = Path(args.target).expanduser()
    if not target.is_dir():
        raise ConfigError(f"--target {target} is not a directory")
    return target


def _install(args: argparse.Namespace) -> int:
    _warn_torchvision()
    print(installer.install(_target(args)))
    return 0


def _uninstall(args: argparse.Namespace) -> int:
    print(installer.uninstall(_target(args)))
    return 0


def _status(args: argparse.Namespace) -> int:
    state = installer.status(_target(args))
    print(state.describe())
    return 0 if state.installed else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tasks-path`` and ``tasks install|uninstall|status`` to the ``icu-bench`` parser."""
    parser = subparsers.add_parser(
        "tasks-path",
        help="print the lmms-eval task folder (for --include_path)",
        description="Print the folder holding the ICU-Bench lmms-eval task YAMLs, for "
        '`lmms-eval --include_path "$(icu-bench tasks-path)" --tasks icu ...`.',
    )
    parser.set_defaults(func=_tasks_path)

    tasks = subparsers.add_parser(
        "tasks",
        help="install the lmms-eval tasks into lmms-eval (no --include_path needed), or remove them",
        description="Link the ICU-Bench task files into a sub-folder "
        f"`{installer.INSTALL_DIRNAME}/` of lmms-eval's own task folder, so that `lmms-eval --tasks icu ...` "
        "finds them without --include_path; `uninstall` removes exactly what `install` placed.",
    )
    sub = tasks.add_subparsers(dest="tasks_command", metavar="{install,uninstall,status}", required=True)
    target_help = (
        "the lmms-eval task folder to install into (default: the installed lmms_eval/tasks); "
        f"the files go to TARGET/{installer.INSTALL_DIRNAME}/"
    )
    commands = (
        ("install", _install, "link the task files into lmms-eval's task folder (idempotent)"),
        ("uninstall", _uninstall, "remove what `install` placed (idempotent)"),
        ("status", _status, "say whether the tasks are installed (exit 0 if so, 1 if not or out of date)"),
    )
    for name, func, text in commands:
        cmd = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        cmd.add_argument("--target", metavar="TARGET", help=target_help)
        cmd.set_defaults(func=func)
