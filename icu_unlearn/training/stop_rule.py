"""Stop when forgotten: train an unlearning stage until its forget rows reach a normalised-forgetting target.

A method comparison at a fixed step budget compares methods at different amounts of forgetting (a budget that
forgets one vanilla model completely leaves another half-known). This rule makes the amount of forgetting the
fixed quantity instead: every ``check_every`` optimizer steps the stage's forget rows are scored and training
stops once

    f = clip((A0 − Ak) / (A0 − B0), 0, 1) ≥ target

where, all teacher-forced (:func:`icu_unlearn.training.knowledge.answer_scores`: an item is known when the argmax
is the gold token at every answer position, the condition under which greedy decoding emits the answer):

* ``Ak`` is the accuracy of the model being trained on the stage's forget rows (forget task K, both views,
  the core QA rows lmms-eval's forget tasks score);
* ``A0`` is the vanilla model's accuracy on the same rows;
* ``B0`` is the vanilla model's accuracy on the holdout rows (both views): the base rate of a model that never
  saw the person (0 when the data has no holdout rows).

This is the report's normalised forgetting f[k][k] (:func:`icu_tasks.continual.metrics.normalised_forgetting`)
with teacher forcing in place of generation, pooled over the two views. A task the vanilla model does not know
above the base rate (``A0 − B0`` below :data:`icu_tasks.continual.metrics.MIN_MARGIN`) has no f: the rule can
never be met and the stage runs to ``max_steps``. ``max_steps`` is the budget: a stage that exhausts it is
recorded as not met (no error). Checks happen every ``check_every`` steps and at the last step; when the forget
rows already meet the target before the stage trains (collateral of earlier stages), the stage stops after its
first step, the fewest the stage guard accepts. What was reached is recorded in ``stage.json`` under
``stop_rule`` (:meth:`StopWhenForgotten.record`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from icu_tasks.continual.metrics import normalised_forgetting
from icu_tasks.data.schema import HOLDOUT
from icu_unlearn.training.knowledge import StopAtCheck, accuracy, answer_scores
from icu_unlearn.training.stop_config import DEFAULT_CHECK_EVERY, ForgettingTarget

if TYPE_CHECKING:
    import torch

    from icu_tasks.data.dataset import IcuData
    from icu_unlearn.training.data import Collator, Example

#: The rule's name in ``stage.json``.
RULE = "until_forgotten"


@dataclass(frozen=True)
class ForgettingReference:
    """What the vanilla model knew: ``A0`` on the stage's forget rows and the base rate ``B0`` on holdout rows.

    Attributes:
        vanilla_accuracy: A0, teacher-forced accuracy of the vanilla model on the stage's forget rows.
        base_rate: B0, its accuracy on the holdout rows (0 when there are none).
        forget_items: how many forget rows A0 and every check score.
        holdout_items: how many holdout rows B0 scored.
    """

    vanilla_accuracy: float
    base_rate: float
    forget_items: int = 0
    holdout_items: int = 0

    def forgetting(self, acc: float) -> float:
        """f for an accuracy ``acc`` on the forget rows; NaN when A0 − B0 is below the metrics' margin."""
        matrix = np.array([[self.vanilla_accuracy], [acc]], dtype=float)
        return float(normalised_forgetting(matrix, self.base_rate)[1, 0])


def rule_examples(data: IcuData, task: int) -> tuple[list[Example], list[Example]]:
    """The examples of the rule: forget task ``task`` and the holdout split, both views, core QA rows."""
    from icu_unlearn.training.data import examples_from_rows

    forget = examples_from_rows(data, data.forget(task))
    holdout = examples_from_rows(data, data.rows(split=HOLDOUT))
    return forget, holdout


def forgetting_reference(
    model: torch.nn.Module, collator: Collator, forget: Sequence[Example], holdout: Sequence[Example]
) -> ForgettingReference:
    """A0 and B0 of ``model`` (the vanilla model: call it before the stage adapter is attached)."""
    a0 = accuracy(answer_scores(model, collator, forget))
    b0 = accuracy(answer_scores(model, collator, holdout)) if holdout else 0.0
    return ForgettingReference(a0, b0, len(forget), len(holdout))


class StopWhenForgotten(StopAtCheck):
    """Stop an unlearning stage once the normalised forgetting of ``examples`` reaches ``target``.

    ``reference`` gives A0 and B0 (:class:`ForgettingReference`). Checks record ``{"step", "accuracy",
    "forgetting"}``; ``reached_step`` stays None when the stage runs to its cap; ``start`` is the check made
    before the first step.
    """

    def __init__(
        self,
        examples: Sequence[Example],
        collator: Collator,
        reference: ForgettingReference,
        target: float,
        check_every: int = DEFAULT_CHECK_EVERY,
    ) -> None:
        ForgettingTarget(target, check_every)
        super().__init__(collator, target, check_every)
        self.examples = list(examples)
        self.reference = reference
        self.start: dict[str, float] | None = None

    def measure(self, model: torch.nn.Module) -> dict[str, float]:
        """``{"accuracy": Ak, "forgetting": f}`` of ``model`` now (f None when undefined)."""
        acc = accuracy(answer_scores(model, self.collator, self.examples))
        f = self.reference.forgetting(acc)
        return {"accuracy": round(acc, 4), "forgetting": None if math.isnan(f) else round(f, 4)}

    def check(self, model: torch.nn.Module) -> tuple[dict[str, Any], bool]:
        record = self.measure(model)
        return record, record["forgetting"] is not None and record["forgetting"] >= self.target

    def due(self, step: int, max_steps: int) -> bool:
        met_before = self.start is not None and self.start["forgetting"] is not None
        if step == 1 and met_before and self.start["forgetting"] >= self.target:
            return True
        return super().due(step, max_steps)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is not None:
            self.start = self.measure(model)
        return control

    def record(self, steps: int, budget: int) -> dict[str, Any]:
        """The ``stop_rule`` entry of ``stage.json`` for a stage that ran ``steps`` of a ``budget``."""
        last = self.history[-1] if self.history else (self.start or {})
        return rule_record(
            self.target, self.check_every, self.reference, last.get("forgetting"), last.get("accuracy"),
            steps=steps, budget=budget, met=self.reached_step is not None, start=self.start,
            checks=self.history,
        )  # fmt: skip


def rule_record(
    target: float,
    check_every: int,
    reference: ForgettingReference,
    value: float | None,
    acc: float | None,
    *,
    steps: int,
    budget: int | None,
    met: bool,
    start: dict[str, Any] | None = None,
    checks: list[dict[str, Any]] | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """The ``stop_rule`` record: target, steps used of the budget, the value reached, whether it was met."""
    return {
        "rule": RULE,
        "target": float(target),
        "check_every": int(check_every),
        "met": bool(met),
        "value": value,
        "accuracy": acc,
        "steps": int(steps),
        "budget": budget,
        "vanilla_accuracy": round(reference.vanilla_accuracy, 4),
        "base_rate": round(reference.base_rate, 4),
        "forget_items": reference.forget_items,
        "holdout_items": reference.holdout_items,
        "start": start,
        "checks": list(checks or []),
        "note": note,
    }


__all__ = [
    "ForgettingReference",
    "StopWhenForgotten",
    "forgetting_reference",
    "rule_examples",
    "rule_record",
]
