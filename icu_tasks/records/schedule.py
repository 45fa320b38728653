"""The evaluation schedule of a continual run: which stages are scored and which forget tasks at each.

The naive schedule scores every forget task after every stage: the full (T + 1) × J forget matrix, whose cost
grows with T × J. A long run can score less:

* ``every = N`` scores stages 0, N, 2N, … and always the last stage T;
* ``window = W`` scores, at a stage k ≥ 1, only the forget tasks j ≤ k + W: the tasks already requested (for
  FE, HFP, rebound) plus W future tasks (for collateral). Stage 0 always scores every task, because A[0][j] is
  the reference of every normalised-forgetting term f[k][j].

Retain, holdout and utility tasks are scored in full at every scored stage. What is not scored stays NaN in
the continual matrices and is counted, never imputed (:mod:`icu_tasks.report.results`).

How the forget tasks are restricted: the forget docs of one lmms-eval task (``icu_forget_vqa`` …) carry
``forget_task``; the task hooks (:mod:`icu_tasks.harness.hooks`) keep only the forget tasks named in the environment
variable ``ICU_FORGET_TASKS`` (e.g. ``1-12`` or ``1,3,5-7``; unset = all), the same way ``ICU_DATA_DIR``
names the data dir. It works for the ``lmms-eval`` command line as well::

    ICU_FORGET_TASKS=1-12 lmms-eval --tasks icu_forget_vqa --model icu_hf --model_args pretrained=...

and the scored selection is recorded in ``results.json`` (the task's ``metadata``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from icu_tasks.errors import ConfigError

#: Environment variable the forget-task hooks read: the forget tasks to score (unset or empty = all).
FORGET_TASKS_ENV = "ICU_FORGET_TASKS"
#: Key of the selection in the task's metadata (``results.json`` ``configs[<task>]["metadata"]``).
FORGET_TASKS_KEY = "icu_forget_tasks"


def parse_tasks(text: str) -> frozenset[int]:
    """``"1-3,7"`` → {1, 2, 3, 7}; ConfigError naming the bad part otherwise."""
    out: set[int] = set()
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            first, last = (int(lo), int(hi)) if sep else (int(part), int(part))
        except ValueError:
            first = last = 0
        if first < 1 or last < first:
            raise ConfigError(
                f"{FORGET_TASKS_ENV}: {part!r} is not a forget task id or range (e.g. 3 or 1-12; ids start at 1)"
            )
        out.update(range(first, last + 1))
    if not out:
        raise ConfigError(f"{FORGET_TASKS_ENV}: {text!r} names no forget task (e.g. 1-12)")
    return frozenset(out)


def format_tasks(tasks: Iterable[int]) -> str:
    """{1, 2, 3, 7} → ``"1-3,7"`` (the inverse of :func:`parse_tasks`)."""
    ids = sorted({int(t) for t in tasks})
    parts: list[str] = []
    start = prev = None
    for t in [*ids, None]:
        if start is not None and (t is None or t != prev + 1):
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = None
        if t is not None and start is None:
            start = t
        prev = t
    return ",".join(parts)


def forget_task_filter() -> frozenset[int] | None:
    """The forget tasks ``$ICU_FORGET_TASKS`` names, or None (unset/empty: every task)."""
    text = os.environ.get(FORGET_TASKS_ENV, "").strip()
    return parse_tasks(text) if text else None


@dataclass(frozen=True)
class EvalSchedule:
    """Which stages of a T-stage run are scored (``every``) and which forget tasks at each (``window``).

    Attributes:
        every: score stages 0, every, 2·every, … and always T (1 = every stage).
        window: at stage k ≥ 1 score forget tasks j ≤ k + window (None = every task, the full matrix).
    """

    every: int = 1
    window: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or int(self.every) < 1:
            raise ConfigError(f"eval_every must be >= 1, got {self.every}")
        if self.window is not None and (isinstance(self.window, bool) or int(self.window) < 0):
            raise ConfigError(f"eval_window must be >= 0 or omitted (every task), got {self.window}")

    @property
    def full(self) -> bool:
        """Whether this is the full matrix (every stage, every task)."""
        return self.every == 1 and self.window is None

    def scored(self, k: int, stages: int) -> bool:
        """Whether stage ``k`` of a ``stages``-stage run is scored."""
        return k == 0 or k == stages or k % self.every == 0

    def stages(self, stages: int) -> list[int]:
        """The scored stages of a ``stages``-stage run, in order."""
        return [k for k in range(stages + 1) if self.scored(k, stages)]

    def forget_tasks(self, k: int, n_tasks: int) -> frozenset[int] | None:
        """The forget tasks scored at stage ``k`` of data with ``n_tasks`` forget tasks; None = all of them."""
        if k == 0 or self.window is None or k + self.window >= n_tasks:
            return None
        return frozenset(range(1, k + self.window + 1))

    def describe(self) -> str:
        """One line for logs and reports."""
        if self.full:
            return "every stage, every forget task (the full matrix)"
        when = (
            "every stage" if self.every == 1 else f"stages 0, {self.every}, {2 * self.every}, … and the last"
        )
        what = (
            "every forget task"
            if self.window is None
            else f"forget tasks j <= k + {self.window} (all at stage 0)"
        )
        return f"{when}; {what}"
