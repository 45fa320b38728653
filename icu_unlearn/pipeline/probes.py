"""Robustness probes of a run's stage K: train the attacks, score everything the robustness table reads.

For stage K of ``RUN`` (:func:`probe_stage`):

* the attacked stages (:mod:`icu_unlearn.pipeline.relearn`): ``RUN/probes/stage_K/relearn`` and ``…/benign``,
  and once per run the from-scratch control ``RUN/probes/stage_0/scratch``;
* lmms-eval scores (``RUN/probes/eval/stage_K/NAME``) of the forget tasks 1..K for stage K as it is
  (``unlearned``), after each attack and quantized (``icu_hf`` ``quantize=``); and at stage 0 of the vanilla
  model (every forget task and the holdout people), of the vanilla quantized the same ways, and of the scratch
  control (holdout people).

Every evaluation is scored through ``icu_hf`` on the in-process lmms-eval path
(:func:`icu_unlearn.scoring.evaluate.score`), so the files are those of ``lmms-eval --model icu_hf``. A
probe whose dir is complete is skipped: the probes resume like a run. :mod:`icu_tasks.report.robustness`
turns the scores into the robustness table.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from icu_tasks.errors import ConfigError, StageError
from icu_tasks.records import layout
from icu_tasks.records.files import read_record
from icu_unlearn.pipeline.relearn import RelearnConfig, relearn_attack
from icu_unlearn.pipeline.rundir import RunDir
from icu_unlearn.scoring.evaluate import score, task_env
from icu_unlearn.training.stage_dir import read_stage

#: Generation tasks a probe is scored on: the forget tasks, and the holdout people for the scratch control.
FORGET_TASKS: tuple[str, ...] = ("icu_forget_vqa", "icu_forget_qa")
HOLDOUT_TASKS: tuple[str, ...] = ("icu_holdout_vqa", "icu_holdout_qa")
#: Quantization probes run by default (the table's "int8" and "4-bit" columns).
DEFAULT_SCHEMES: tuple[str, ...] = ("int8", "nf4")


@dataclass
class ProbeConfig:
    """What the probes of a stage run: the attacks' fine-tune, the quantization schemes, scoring settings."""

    attack: RelearnConfig = field(default_factory=RelearnConfig)
    schemes: Sequence[str] = DEFAULT_SCHEMES
    batch_size: int = 16
    max_new_tokens: int | None = None
    device: str | None = "cpu"

    def __post_init__(self) -> None:
        unknown = [s for s in self.schemes if s not in layout.QUANT_PROBES]
        if unknown:
            raise ConfigError(
                f"unknown quantization {unknown[0]!r}; choose from {', '.join(layout.QUANT_PROBES)}"
            )


def run_inputs(run_dir: str | Path) -> tuple[str, str, int]:
    """``(base, data, stages)`` recorded in ``RUN/run.json``."""
    record = read_record(Path(run_dir) / layout.RUN_JSON)
    if not record.get("base") or not record.get("data"):
        raise StageError(
            f"{run_dir} is not a run dir made by icu-bench run (no {layout.RUN_JSON} with base and data)"
        )
    return str(record["base"]), str(record["data"]), int(record.get("stages", 0))


def check_probe_stages(stages: Sequence[int], last: int) -> list[int]:
    """The stages to probe, sorted and unique; a ConfigError for one outside 1..``last``."""
    out = sorted({int(k) for k in stages})
    bad = [k for k in out if not 1 <= k <= int(last)]
    if bad:
        raise ConfigError(f"probe stage {bad[0]} is not a stage of this run (1..{last})")
    return out


def check_probe_stage(run_dir: str | Path, k: int) -> Path:
    """Stage ``k``'s dir of the run; StageError if it is not complete."""
    if int(k) < 1:
        raise ConfigError(f"a probed stage must be >= 1 (stage 0 is the vanilla model), got {k}")
    rd = RunDir(run_dir)
    if not rd.stage_complete(int(k)):
        raise StageError(
            f"stage {k} of {run_dir} is not complete (no {rd.stage_dir(int(k)) / layout.STAGE_JSON})"
        )
    return rd.stage_dir(int(k))


def train_attacks(
    run_dir: str | Path, k: int, config: ProbeConfig, log: Callable[[str], None] = print
) -> None:
    """The relearn and benign attacks of stage ``k`` and the run's scratch control (those not yet written).

    All three use one learning rate: the configured one, else stage ``k``'s own (so the control runs the
    identical attack from the vanilla model).
    """
    base, data, _ = run_inputs(run_dir)
    stage = check_probe_stage(run_dir, k)
    lr = config.attack.learning_rate or read_stage(stage).get("config", {}).get("learning_rate")
    attack = replace(config.attack, learning_rate=lr)
    for kind, stage_k, parent in (("relearn", k, stage), ("benign", k, stage), ("scratch", 0, None)):
        out = layout.probe_dir(run_dir, stage_k, kind)
        if (out / layout.STAGE_JSON).is_file():
            continue
        log(f"probe stage {stage_k}: {kind} attack, {attack.steps} steps")
        relearn_attack(base, data, out, kind, attack, stage_dir=parent, stage=stage_k, device=config.device)


def _evaluations(
    run_dir: Path, k: int, schemes: Sequence[str]
) -> list[tuple[int, str, Path | None, str | None]]:
    """``(stage, probe name, adapter dir, quantize)`` of every evaluation the probes of stage ``k`` need."""
    stage = layout.stage_dir(run_dir, k)
    out = [
        (0, layout.VANILLA_PROBE, None, None),
        (0, "scratch", layout.probe_dir(run_dir, 0, "scratch"), None),
    ]
    out += [(0, s, None, s) for s in schemes]
    out += [(k, layout.UNLEARNED_PROBE, stage, None)]
    out += [(k, kind, layout.probe_dir(run_dir, k, kind), None) for kind in ("relearn", "benign")]
    out += [(k, s, stage, s) for s in schemes]
    return out


def score_probes(
    run_dir: str | Path, k: int, config: ProbeConfig, log: Callable[[str], None] = print
) -> None:
    """Score every evaluation of stage ``k``'s probes that is not complete yet (attacks must be trained)."""
    run_dir = Path(run_dir)
    base, data, _ = run_inputs(run_dir)
    shared = None  # one full-precision icu_hf for every unquantized evaluation: only the adapter changes
    for stage_k, name, adapter, quantize in _evaluations(run_dir, int(k), config.schemes):
        out = layout.probe_eval_dir(run_dir, stage_k, name)
        if out.is_dir() and any(out.rglob("*_results.json")):
            continue
        if name == "scratch":
            tasks, forget = list(HOLDOUT_TASKS), None
        elif stage_k == 0:
            tasks, forget = (
                list(FORGET_TASKS) + (list(HOLDOUT_TASKS) if name == layout.VANILLA_PROBE else []),
                None,
            )
        else:
            tasks, forget = list(FORGET_TASKS), list(range(1, int(k) + 1))
        log(f"probe stage {stage_k}: scoring {name}")
        with task_env(data):
            if quantize:
                lm = _icu_hf(base, adapter, config, quantize)
            else:
                shared = shared or _icu_hf(base, None, config, None)
                shared.load_adapter(str(adapter) if adapter else None)
                lm = shared
        out.parent.mkdir(parents=True, exist_ok=True)
        score(lm, _model_args(base, adapter, quantize), tasks, out, data_dir=Path(data), forget_tasks=forget)


def _icu_hf(base: str, adapter: Path | None, config: ProbeConfig, quantize: str | None) -> Any:
    # lmms-eval and torch load here, not at import: the CLI's parser and bad-input paths stay light
    from icu_unlearn.scoring.icu_hf import IcuHF

    kwargs: dict[str, Any] = {"batch_size": config.batch_size, "device": config.device or "cpu"}
    if config.max_new_tokens:
        kwargs["max_new_tokens"] = config.max_new_tokens
    if adapter:
        kwargs["adapter"] = str(adapter)
    if quantize:
        kwargs["quantize"] = quantize
    return IcuHF(pretrained=base, **kwargs)


def _model_args(base: str, adapter: Path | None, quantize: str | None) -> str:
    """The ``--model_args`` the lmms-eval CLI would get for the same evaluation (names its output folder)."""
    parts = [f"pretrained={base}"] + ([f"adapter={adapter}"] if adapter else [])
    return ",".join(parts + ([f"quantize={quantize}"] if quantize else []))


def probe_stage(
    run_dir: str | Path, k: int, config: ProbeConfig, *, log: Callable[[str], None] = print, lock: bool = True
) -> None:
    """Train and score every probe of stage ``k`` of ``run_dir`` (resumable). ``lock=False`` when the caller
    already holds the run's lock (``icu-bench run --probe-stages``)."""
    run_inputs(run_dir)
    check_probe_stage(run_dir, k)
    rd = RunDir(run_dir)
    with rd.lock() if lock else contextlib.nullcontext():
        train_attacks(run_dir, k, config, log)
        score_probes(run_dir, k, config, log)
