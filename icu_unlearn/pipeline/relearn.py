"""The relearning attack: a few fine-tuning steps on half of the forgotten people, written as a scorable stage.

Three attacks share one routine (:func:`relearn_attack`), each a plain next-token fine-tune (the fine-tune's
:class:`~icu_unlearn.training.loop.NLLObjective` on the shared training loop) of a stage's own adapter:

* ``relearn`` — from stage K, on the *exposed* half of the profiles of forget tasks 1..K (both views); the
  other, *unexposed* half is what the probe scores: does teaching some forgotten people bring back the rest?
* ``benign`` — from stage K, on retain-train rows only: does any fine-tuning undo the forgetting, forgotten data
  or not?
* ``scratch`` — from the vanilla model (a fresh LoRA adapter), on the exposed half of the *holdout* people, whom
  the vanilla model never saw: how much do the same steps teach about the unexposed half from nothing?

The halves are fixed by a seed (:func:`split_profiles`), per forget task and for the holdout people. The result
is a stage dir (``RUN/probes/stage_K/<kind>``: the continued adapter, the stage's masks, ``stage.json`` with an
``attack`` block naming the kind, K, the exposed and unexposed profile ids and the steps) that loads with
``PeftModel.from_pretrained`` on the vanilla model and that ``icu_hf`` scores like any stage.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from icu_tasks.data.dataset import open_data
from icu_tasks.errors import ConfigError, DataError
from icu_tasks.records.layout import ATTACK_PROBES, check_writable
from icu_unlearn.methods.config import TrainingMethodConfig, coerce_fields
from icu_unlearn.models import load_base, load_stage, read_masks
from icu_unlearn.models.adapters import continue_stage, lora_model
from icu_unlearn.models.loading import ADAPTER_CONFIG
from icu_unlearn.training.data import Collator, check_trainable, examples_from_rows
from icu_unlearn.training.stage_dir import (
    adapter_summary,
    check_changed,
    data_and_base,
    read_stage,
    snapshot_trainable,
    versions,
    weight_changes,
    write_stage,
)

#: The attacks, by what they train on.
KINDS: tuple[str, ...] = ATTACK_PROBES
#: Key of the holdout people's split (forget tasks use their id).
HOLDOUT_KEY = "holdout"


@dataclass
class RelearnConfig:
    """How the attacker fine-tunes.

    Attributes:
        steps: optimizer steps.
        learning_rate: AdamW learning rate (None: the attacked stage's own, else the method default).
        batch_size: rows per step (capped at the rows available).
        seed: seed of the exposed/unexposed split, the data order and the fresh adapter.
    """

    steps: int = 25
    learning_rate: float | None = None
    batch_size: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        coerce_fields(self)
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ConfigError(f"learning rate must be > 0, got {self.learning_rate}")


def split_profiles(profile_ids: list[str], seed: int, key: str | int) -> tuple[list[str], list[str]]:
    """``(exposed, unexposed)``: a seeded half of ``profile_ids`` (``n // 2`` of them) and the rest, both sorted.

    The order depends only on the sorted ids, ``seed`` and ``key`` (a forget task id or ``"holdout"``), never on
    the order given. Fewer than two profiles cannot be split (DataError).
    """
    ids = sorted(set(profile_ids))
    if len(ids) < 2:
        raise DataError(f"cannot split {len(ids)} profile(s) of {key} into an exposed and an unexposed half")
    order = list(ids)
    random.Random(f"icu-relearn/{seed}/{key}").shuffle(order)
    half = len(ids) // 2
    return sorted(order[:half]), sorted(order[half:])


def profile_split(data: Any, tasks: list[int] | None, seed: int) -> dict[str, dict[str, list[str]]]:
    """``{key: {"exposed": [...], "unexposed": [...]}}`` per forget task in ``tasks`` (``None``: the holdout
    people, under key ``"holdout"``)."""
    groups: dict[str, list[dict]] = {}
    if tasks is None:
        groups[HOLDOUT_KEY] = data.holdout()
    else:
        for task in tasks:
            groups[str(task)] = data.forget(int(task))
    out = {}
    for key, rows in groups.items():
        exposed, unexposed = split_profiles([r["profile_id"] for r in rows], seed, key)
        out[key] = {"exposed": exposed, "unexposed": unexposed}
    return out


def attack_rows(data: Any, kind: str, split: dict[str, dict[str, list[str]]]) -> list[dict]:
    """The rows an attack of ``kind`` trains on (both views, the trained phrasing)."""
    if kind == "benign":
        return data.retain("train")
    exposed = {p for group in split.values() for p in group["exposed"]}
    rows = data.holdout() if kind == "scratch" else data.forget([int(k) for k in split])
    return [r for r in rows if r["profile_id"] in exposed]


def relearn_attack(
    base: str | os.PathLike,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    kind: str,
    config: RelearnConfig,
    *,
    stage_dir: str | os.PathLike | None = None,
    stage: int = 0,
    overwrite: bool = False,
    device: str | None = None,
) -> Path:
    """Fine-tune ``stage_dir`` (None: the vanilla ``base`` with a fresh LoRA adapter) as attack ``kind`` and
    write the attacked stage to ``out_dir``; returns it.

    ``stage`` is K (forget tasks 1..K are the forgotten ones; 0 with ``kind="scratch"``).
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown attack {kind!r}; choose from {', '.join(KINDS)}")
    if (kind == "scratch") != (stage_dir is None):
        raise ConfigError("the scratch attack starts from the vanilla model; relearn and benign from a stage")
    out = Path(out_dir)
    check_writable(out, overwrite)
    data = open_data(data_dir)
    split = profile_split(data, None if kind == "scratch" else list(range(1, int(stage) + 1)), config.seed)
    rows = attack_rows(data, kind, split)
    if not rows:
        raise DataError(f"the {kind} attack has no rows to train on in {data.root}")
    stage_record = _read_stage(stage_dir)
    lr = config.learning_rate or stage_record.get("config", {}).get("learning_rate") or _default_lr()
    examples = examples_from_rows(data, rows)
    if kind != "scratch":  # the scratch control trains on holdout people on purpose: nothing else may
        check_trainable(examples, f"the {kind} attack")
    model, processor, trainer, seconds = _train(base, examples, stage_dir, config, float(lr), device)
    record = _attack_record(
        kind,
        stage,
        stage_dir,
        stage_record,
        base,
        data,
        split,
        config,
        float(lr),
        len(rows),
        trainer,
        seconds,
    )
    _write(out, trainer.model, stage_dir, record, overwrite)
    return out


def _read_stage(stage_dir: str | os.PathLike | None) -> dict[str, Any]:
    return read_stage(stage_dir) if stage_dir is not None else {}


def _default_lr() -> float:
    return TrainingMethodConfig().learning_rate


def _attack_model(base: Any, stage_dir: str | os.PathLike | None, device: str | None) -> tuple[Any, Any]:
    """The model under attack, trainable: the stage's adapter continued (its masks applied), or a fresh LoRA
    adapter (the method defaults) on the vanilla model or on a masks-only stage."""
    model, processor = load_base(base, device=device)
    if stage_dir is not None and (Path(stage_dir) / ADAPTER_CONFIG).is_file():
        return continue_stage(model, stage_dir, trainable=True), processor
    if stage_dir is not None:
        model = load_stage(model, stage_dir)
    cfg = TrainingMethodConfig()
    return lora_model(model, cfg.lora_r, cfg.lora_alpha, 0.0, cfg.lora_target_modules), processor


def _train(
    base: Any, examples: list, stage_dir: Any, config: RelearnConfig, lr: float, device: Any
) -> tuple[Any, Any, Any, float]:
    """Seeded next-token fine-tune of the attacked model on ``examples`` on the shared training loop (the
    examples list is the map-style dataset; the Trainer shuffles it)."""
    # torch/transformers load here, not at import: `icu-bench attack --help` and bad input stay light
    from transformers import set_seed

    from icu_unlearn.training.loop import NLLObjective, training_arguments
    from icu_unlearn.training.progress import train_quietly

    set_seed(config.seed)
    model, processor = _attack_model(base, stage_dir, device)
    model.train()
    before = snapshot_trainable(model)
    with tempfile.TemporaryDirectory(prefix="icu-relearn-") as scratch:
        args = training_arguments(
            scratch,
            max_steps=config.steps,
            batch_size=min(config.batch_size, len(examples)),
            learning_rate=lr,
            lr_scheduler_type="constant",
            seed=config.seed,
            device=device,
        )
        start = time.perf_counter()
        trainer = train_quietly(model, NLLObjective(), list(examples), Collator(processor), args)
        seconds = time.perf_counter() - start
    check_changed(weight_changes(trainer.model, before), "relearning attack")
    trainer.model.eval()
    return trainer.model, processor, trainer, seconds


def _attack_record(
    kind: str,
    stage: int,
    stage_dir: Any,
    stage_record: dict,
    base: Any,
    data: Any,
    split: dict,
    config: RelearnConfig,
    lr: float,
    n_rows: int,
    trainer: Any,
    seconds: float,
) -> dict[str, Any]:
    """``stage.json`` of an attacked stage: what ``icu_hf`` checks (base, data) plus the ``attack`` block."""
    parent = None
    if stage_dir is not None:
        parent = {
            "path": str(Path(stage_dir).resolve()),
            "stage": stage,
            "method": stage_record.get("method"),
        }
        parent["stage_id"] = stage_record.get("stage_id")
    attack = {"kind": kind, "stage": int(stage), **asdict(config), "learning_rate": lr, "rows": n_rows}
    attack["exposed"] = {k: v["exposed"] for k, v in split.items()}
    attack["unexposed"] = {k: v["unexposed"] for k, v in split.items()}
    attack["steps_run"] = int(trainer.state.global_step)
    return {
        "stage": int(stage),
        "attack": attack,
        "forget_tasks": [int(k) for k in split if k.isdigit()],
        **data_and_base(data, base),
        "parent": parent,
        "adapter": adapter_summary(trainer.model),
        "train_seconds": round(seconds, 2),
        "log_history": trainer.history.history,
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _write(out: Path, model: Any, stage_dir: Any, record: dict, overwrite: bool) -> None:
    """Write the attacked stage dir atomically (adapter, the attacked stage's masks, ``stage.json``)."""
    masks = read_masks(stage_dir) if stage_dir is not None else {}
    write_stage(out, model, masks, {}, record, overwrite=overwrite)
