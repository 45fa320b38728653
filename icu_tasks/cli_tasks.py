"""``icu-bench tasks-path``: print the folder to give lmms-eval as ``--include_path``.

    lmms-eval --include_path "$(icu-bench tasks-path)" --tasks icu --model icu_hf --model_args pretrained=DIR

(lmms-eval 0.7.3 builds its task index before it reads ``LMMS_EVAL_PLUGINS``, so ``--include_path`` is the
way to add the ICU tasks from the CLI; from Python use ``TaskManager(include_path=task_yamls_dir())``.)
"""

from __future__ import annotations

import argparse

from icu_tasks.errors import ConfigError
from icu_tasks.paths import task_yamls_dir


def _tasks_path(args: argparse.Namespace) -> int:
    path = task_yamls_dir()
    if not path.is_dir():
        raise ConfigError(
            f"the task YAML folder {path} is missing; reinstall icu-bench from a source checkout"
        )
    print(path)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tasks-path`` to the ``icu-bench`` parser."""
    parser = subparsers.add_parser(
        "tasks-path",
        help="print the lmms-eval task folder (for --include_path)",
        description="Print the folder holding the ICU-Bench lmms-eval task YAMLs, for "
        '`lmms-eval --include_path "$(icu-bench tasks-path)" --tasks icu ...`.',
    )
    parser.set_defaults(func=_tasks_path)
