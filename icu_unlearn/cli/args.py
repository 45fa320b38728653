"""Arguments that several ``icu-bench`` commands share, declared once and parsed by one rule.

``--set KEY=VALUE`` (``run``, ``sweep``) and ``--grid KEY=V1,V2`` (``sweep``) name a method hyper-parameter:
the key's dashes become underscores, the short names of the flags are accepted (``lr``, ``steps``) and every value is read as YAML (``25`` → 25, ``{abs: 2}`` → a dict,
``1e-3`` stays text); the method config converts each value to its field's type and checks it.
"""

from __future__ import annotations

import argparse
from typing import Any

from icu_tasks.errors import ConfigError
from icu_unlearn.models.loading import check_device_name
from icu_unlearn.models.precision import DTYPE_HELP, dtype_name

DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps (default auto: cuda when available, else cpu)"


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device`` (default None, which means auto: CUDA when available), its spelling checked at parsing."""
    parser.add_argument("--device", default=None, type=_device, help=DEVICE_HELP)


def add_dtype(parser: argparse.ArgumentParser, default: str | None = "auto") -> None:
    """``--dtype``: the precision the model is loaded and trained in (:mod:`icu_unlearn.models.precision`)."""
    parser.add_argument("--dtype", default=default, type=_dtype, help=DTYPE_HELP)


def _dtype(text: str) -> str:
    try:
        return dtype_name(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _device(text: str) -> str:
    try:
        return check_device_name(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_model(parser: argparse.ArgumentParser, help: str) -> None:
    """``--model DIR``: the model dir, spelt the same in every command (``--base`` stays as a hidden alias);
    read it with :func:`model_dir`."""
    parser.add_argument("--model", dest="model", metavar="DIR", default=None, help=help)
    parser.add_argument("--base", dest="model", default=None, help=argparse.SUPPRESS)


def model_dir(args: argparse.Namespace, required: bool = True) -> str | None:
    """The ``--model`` value; a one-line ConfigError when ``required`` and missing."""
    if required and not args.model:
        raise ConfigError("the model dir is required: pass --model DIR")
    return args.model


#: Short names of method hyper-parameters, as flags (``--lr``) and as ``--set`` keys (``--set lr=1e-3``).
HP_ALIASES = {"lr": "learning_rate", "steps": "max_steps"}


def add_allow_data_mismatch(parser: argparse.ArgumentParser, base: str) -> None:
    """``--allow-data-mismatch``; ``base`` names the vanilla-model argument in the help."""
    parser.add_argument(
        "--allow-data-mismatch",
        action="store_true",
        help=f"accept a data dir whose data hash differs from the one {base} was fine-tuned on",
    )


def add_until_forgotten(
    parser: argparse.ArgumentParser, default_check_every: int | None, default_target: float | None = None
) -> None:
    """``--until-forgotten F`` and ``--check-every N``: the stop rule of a training stage."""
    target = "" if default_target is None else f" (default {default_target})"
    parser.add_argument(
        "--until-forgotten",
        type=float,
        default=default_target,
        dest="until_forgotten",
        metavar="F",
        help="train each stage until the normalised forgetting of its forget rows (teacher-forced, "
        "f = clip((A0 - Ak) / (A0 - B0), 0, 1), B0 = the vanilla model on holdout rows) reaches F in (0, 1]; "
        f"max_steps is the budget (a stage that exhausts it is recorded as not met){target}",
    )
    default = "" if default_check_every is None else f" (default {default_check_every})"
    parser.add_argument(
        "--check-every",
        type=int,
        default=default_check_every,
        dest="check_every",
        metavar="N",
        help=f"with --until-forgotten: optimizer steps between two checks{default}",
    )


def add_set(parser: argparse.ArgumentParser, help: str, dest: str = "set") -> None:
    """``--set KEY=VALUE``, repeatable, collected as a list of texts in ``dest``."""
    parser.add_argument("--set", dest=dest, action="append", default=[], metavar="KEY=VALUE", help=help)


def key_value(text: str, flag: str = "--set") -> tuple[str, Any]:
    """``KEY=VALUE`` → ``(key, value)``; a ConfigError naming ``flag`` for anything else."""
    key, value = _split(text, flag, "KEY=VALUE")
    return key, _value(value)


def key_values(text: str, flag: str = "--grid") -> tuple[str, list[Any]]:
    """``KEY=V1,V2,...`` → ``(key, [v1, v2, ...])``."""
    key, values = _split(text, flag, "KEY=V1,V2,...")
    return key, [_value(v) for v in values.split(",") if v.strip()]


def parse_sets(items: list[str], flag: str = "--set") -> dict[str, Any]:
    """Repeated ``--set KEY=VALUE`` as a dict (a later key wins)."""
    return dict(key_value(item, flag) for item in items)


def _split(text: str, flag: str, form: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise ConfigError(f"{flag}: expected {form}, got {text!r}")
    key = key.strip().replace("-", "_")
    return HP_ALIASES.get(key, key), value.strip()


def _value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text.strip())
    except yaml.YAMLError as err:
        raise ConfigError(f"cannot read the value {text.strip()!r}: {str(err).splitlines()[0]}") from None
