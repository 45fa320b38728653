"""``icu-bench finetune``, ``icu-bench unlearn`` and ``icu-bench methods``.

The unlearning hyper-parameter flags are generated from the methods' config dataclasses (``--beta``,
``--retain-weight``, ``--prune-fraction``…); a flag that the chosen method does not have is an error. Torch and
transformers are imported inside the command functions only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from icu_tasks.errors import ConfigError
from icu_unlearn.cli.args import (
    HP_ALIASES,
    add_allow_data_mismatch,
    add_device,
    add_dtype,
    add_model,
    add_until_forgotten,
    model_dir,
)
from icu_unlearn.training.distributed import is_main
from icu_unlearn.training.stop_config import DEFAULT_CHECK_EVERY, ForgettingTarget

#: Short flags of the most used hyper-parameters (the same names ``--set`` accepts).
ALIASES = {name: [f"--{short}"] for short, name in HP_ALIASES.items()}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_field(
    parser: argparse._ActionsContainer,
    f: dataclasses.Field,
    defaults: dict[str, Any],
    name_owners: bool = True,
) -> None:
    """One ``--flag`` for a config field; ``defaults`` maps each owner (method / command) to its default.

    The help is the field's ``metadata["help"]`` then its default(s) and, with ``name_owners``, the owners
    that have the flag.
    """
    default = next(iter(defaults.values()))
    flags = [_flag(f.name), *ALIASES.get(f.name, [])]
    kwargs: dict[str, Any] = {"dest": f"hp_{f.name}", "default": argparse.SUPPRESS}
    if isinstance(default, bool):
        kwargs["action"] = argparse.BooleanOptionalAction
    elif isinstance(default, dict):
        kwargs.update(type=json.loads, metavar="JSON")
    else:
        kwargs.update(type=type(default), metavar=type(default).__name__.upper())
    values = {json.dumps(v) for v in defaults.values()}
    if len(values) == 1:
        note = f"default {values.pop()}"
        if name_owners:
            note += f"; methods: {', '.join(defaults)}"
    else:
        note = "default " + ", ".join(f"{k} {json.dumps(v)}" for k, v in defaults.items())
    text = f"{f.metadata.get('help', '').strip()} ({note})".strip()
    kwargs["help"] = text.replace("%", "%%")
    parser.add_argument(*flags, **kwargs)


def _method_fields(names: list[str] | None = None) -> dict[str, tuple[dataclasses.Field, dict[str, Any]]]:
    """The hyper-parameters of the methods ``names`` (default: all): name → (field, {method: its default})."""
    from icu_unlearn.methods import get_method, list_methods

    out: dict[str, tuple[dataclasses.Field, dict[str, Any]]] = {}
    for name in names or list_methods():
        cls = get_method(name).config_class
        cfg = cls()
        for f in cls.fields():
            out.setdefault(f.name, (f, {}))[1][name] = getattr(cfg, f.name)
    return out


class _MethodHelp(argparse.Action):
    """``-h/--help`` of ``unlearn``: with ``--method M`` given before it, only M's hyper-parameters."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        method = getattr(namespace, "method", None)
        if method:
            from icu_unlearn.methods import get_method

            name = get_method(method).name
            parser = argparse.ArgumentParser(prog=parser.prog, description=parser.description, add_help=False)
            _unlearn_arguments(parser, [name])
        parser.print_help()
        parser.exit()


def _unlearn_arguments(un: argparse.ArgumentParser, methods: list[str] | None = None) -> None:
    """The ``unlearn`` arguments, with the hyper-parameters of ``methods`` (default: every method)."""
    from icu_unlearn.methods import list_methods

    un.add_argument(
        "-h", "--help", action=_MethodHelp, help="show this help; after --method M, only M's hyper-parameters"
    )
    un.add_argument("--method", required=True, help=f"one of: {', '.join(list_methods())}")
    add_model(un, "the vanilla model dir (from `icu-bench finetune`); required")
    un.add_argument("--data", required=True, help="ICU-Bench data dir the vanilla model was trained on")
    un.add_argument("--stage", required=True, type=int, help="K >= 1: forgets forget task K")
    un.add_argument(
        "--from", dest="parent", default=None, help="stage K-1 dir (default: RUN_DIR/stage_{K-1})"
    )
    un.add_argument("--out", required=True, help="run dir; the stage is written to RUN_DIR/stage_K")
    add_device(un)
    add_dtype(un)
    add_until_forgotten(un, DEFAULT_CHECK_EVERY)
    un.add_argument("--overwrite", action="store_true", help="replace an existing RUN_DIR/stage_K")
    add_allow_data_mismatch(un, "--model")
    un.add_argument(
        "--dry-run",
        action="store_true",
        help="only validate the inputs (method, hyper-parameters, the model, DATA and its hash, the forget task, "
        "the parent stage if it exists) and exit; writes nothing",
    )
    title = (
        f"hyper-parameters of {methods[0]}"
        if methods and len(methods) == 1
        else "hyper-parameters (only those of the chosen method are accepted; `--method M --help` lists M's)"
    )
    group = un.add_argument_group(title)
    for f, defaults in _method_fields(methods).values():
        _add_field(group, f, defaults, name_owners=not methods or len(methods) > 1)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``finetune``, ``unlearn`` and ``methods`` to the ``icu-bench`` parser."""

    ft = subparsers.add_parser(
        "finetune",
        help="fine-tune a model on every profile but the holdout ones: the vanilla (stage-0) model",
        description="Fine-tune MODEL on the QA rows of DATA (both views, every split but holdout) and save "
        "the merged vanilla model to OUT. Works under `accelerate launch --num_processes N`.",
    )
    add_model(ft, "the model dir to fine-tune (e.g. from `icu-bench model build-tiny`); required")
    ft.add_argument("--data", required=True, help="ICU-Bench data dir")
    ft.add_argument("--out", required=True, help="output model dir")
    from icu_unlearn.training.finetune import FinetuneConfig

    defaults = FinetuneConfig()
    group = ft.add_argument_group("hyper-parameters (defaults: the tiny-model recipe)")
    for f in dataclasses.fields(FinetuneConfig):
        _add_field(group, f, {"fine-tune": getattr(defaults, f.name)}, name_owners=False)
    add_device(ft)
    add_dtype(ft)
    ft.add_argument("--overwrite", action="store_true", help="replace an existing --out dir")
    ft.add_argument(
        "--check", action="store_true", help="print exact-match accuracy per split and view at the end"
    )
    ft.set_defaults(func=_finetune)

    un = subparsers.add_parser(
        "unlearn",
        add_help=False,
        help="run one unlearning stage: forget task K starting from stage K-1",
        description="Forget forget task K of DATA with METHOD, starting from stage K-1 (the vanilla model "
        "for K = 1), and write RUN_DIR/stage_K (adapter, masks, stage.json). Works under "
        "`accelerate launch --num_processes N`.",
    )
    _unlearn_arguments(un)
    un.set_defaults(func=_unlearn)

    me = subparsers.add_parser(
        "methods",
        help="list the unlearning methods and their hyper-parameters",
        description="List every registered unlearning method (one line on what it does) and its "
        "hyper-parameters with their defaults (flags of `icu-bench unlearn`, keys of --set).",
    )
    me.set_defaults(func=_methods)


def _hyper_parameters(args: argparse.Namespace) -> dict[str, Any]:
    return {k[3:]: v for k, v in vars(args).items() if k.startswith("hp_")}


def _finetune(args: argparse.Namespace) -> int:
    from icu_unlearn.training.finetune import FinetuneConfig, finetune

    config = FinetuneConfig(**_hyper_parameters(args))
    out = finetune(
        model_dir(args), args.data, args.out, config, overwrite=args.overwrite, device=args.device,
        dtype=args.dtype,
    )  # fmt: skip
    if not is_main():
        return 0
    print(f"vanilla model: {out}")
    if args.check:
        _print_check(out, args.data, args.device)
    return 0


def _print_check(model_dir: Any, data_dir: str, device: str | None) -> None:
    from icu_tasks.data.dataset import open_data
    from icu_tasks.data.schema import HOLDOUT, KNOWN_SPLITS, VIEWS
    from icu_unlearn.models import load_base
    from icu_unlearn.training.data import examples_from_rows, quick_accuracy

    model, processor = load_base(model_dir, device=device)
    data = open_data(data_dir)
    print("exact match (greedy):")
    for split in (*KNOWN_SPLITS, HOLDOUT):
        for view in VIEWS:
            examples = examples_from_rows(data, data.rows(split=split, view=view))
            if examples:
                acc = quick_accuracy(model, processor, examples)
                never = "  never trained: the base rate" if split == HOLDOUT else ""
                print(f"  {split:<13} {view:<4} {acc:.3f}  (n={len(examples)}){never}")


def _unlearn(args: argparse.Namespace) -> int:
    from icu_unlearn.methods import get_method
    from icu_unlearn.training.unlearn import run_stage

    cls = get_method(args.method)
    values = _hyper_parameters(args)
    known = {f.name for f in cls.config_class.fields()}
    wrong = sorted(set(values) - known)
    if wrong:
        kind = "training-free method" if not cls.trains else "method"
        raise ConfigError(
            f"{', '.join(_flag(w) for w in wrong)} does not apply to {kind} '{cls.name}' "
            f"(its hyper-parameters: {', '.join(_flag(k) for k in sorted(known))})"
        )
    method = cls(cls.config_class.from_dict(values))
    until = None
    if args.until_forgotten is not None or args.check_every != DEFAULT_CHECK_EVERY:
        if args.until_forgotten is None:
            raise ConfigError("--check-every needs --until-forgotten")
        until = ForgettingTarget(args.until_forgotten, args.check_every)
    where = (model_dir(args), args.data, args.stage, args.out)
    common = {"parent": args.parent, "allow_data_mismatch": args.allow_data_mismatch}
    if args.dry_run:
        from icu_unlearn.models.precision import check_training_dtype
        from icu_unlearn.training.stage_dir import check_stage_inputs

        check_training_dtype(args.dtype, args.device)
        inputs = check_stage_inputs(*where, **common, dry_run=True)
        print(f"ok: {cls.name} can forget task {inputs.k} of {inputs.data.root} from {inputs.base_dir}")
        return 0
    result = run_stage(
        method, *where, **common, overwrite=args.overwrite, device=args.device, until_forgotten=until,
        dtype=args.dtype,
    )  # fmt: skip
    if is_main():
        print(f"stage {args.stage} ({cls.name}): {result.path}")
        rule = result.record.get("stop_rule")
        if rule:
            print(describe_rule(rule))
    return 0


def describe_rule(rule: dict[str, Any]) -> str:
    """One line on a stage's stop rule: met or not, the value reached and the steps used."""
    value = "n/a" if rule.get("value") is None else f"{rule['value']:.3f}"
    state = "met" if rule["met"] else "NOT met"
    budget = f" of {rule['budget']}" if rule.get("budget") else ""
    return f"  forgetting {value} (target {rule['target']}): {state} after {rule['steps']}{budget} steps"


def _methods(args: argparse.Namespace) -> int:
    from icu_unlearn.methods import get_method, list_methods

    for name in list_methods():
        cls = get_method(name)
        cfg = cls.config_class()
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{name}: {doc}")
        print(
            "  " + ", ".join(f"{_flag(f.name)}={getattr(cfg, f.name)!r}" for f in cls.config_class.fields())
        )
    return 0
