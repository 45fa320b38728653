"""What a model knows, in one forward pass: teacher-forced answer accuracy and answer NLL per example.

An example counts as *known* when, fed the question and the gold answer (teacher forcing), the model's argmax
at every answer position — the answer tokens and the end-of-turn token after them — is the gold token. That
is exactly the condition under which greedy decoding emits the gold answer and stops, so it agrees with greedy
exact match (a test checks this), at the cost of one forward pass instead of a decoding loop.

:class:`StopWhenKnown` uses it as a stopping rule for the fine-tune ("train until it knows the data"): every
``check_every`` optimizer steps it scores each split × view group of the data and stops training once every
group reaches the target. :class:`StopWhenForgotten` is the mirror image for an unlearning stage: it stops
once at most a given fraction of some items (e.g. the forget items the vanilla model knew) is still known, so
that methods can be compared at the same amount of forgetting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from icu_tasks.data.schema import HOLDOUT, KNOWN_SPLITS, VIEWS
from icu_tasks.errors import ConfigError
from icu_unlearn.methods.base import forward_logits

if TYPE_CHECKING:
    import torch

    from icu_tasks.data.dataset import IcuData
    from icu_unlearn.training.data import Collator, Example

#: Splits × views the fine-tune is checked on (a group without rows is skipped): every split the fine-tune
#: trains on. Never ``holdout`` — those profiles are not supposed to be known (they give the base rate).
CHECK_SPLITS = KNOWN_SPLITS


@dataclass(frozen=True)
class AnswerScore:
    """One example under teacher forcing.

    Attributes:
        correct: argmax equals the gold token at every answer position (incl. the end-of-turn token).
        nll: mean negative log-likelihood of the answer tokens, in nats per token.
        tokens: how many answer tokens were scored.
    """

    correct: bool
    nll: float
    tokens: int


def answer_scores(
    model: torch.nn.Module, collator: Collator, examples: Sequence[Example], *, batch_size: int = 32
) -> list[AnswerScore]:
    """Teacher-forced correctness and answer NLL of every example (model in eval mode, no gradient)."""
    import torch

    from icu_unlearn.methods.losses import token_log_probs

    out: list[AnswerScore] = []
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            for start in range(0, len(examples), batch_size):
                batch = collator.encode(examples[start : start + batch_size])
                batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
                logits = forward_logits(model, batch)
                logp, mask = token_log_probs(logits, batch["labels"])
                hits = logits[:, :-1, :].argmax(-1).eq(batch["labels"][:, 1:]) | ~mask
                n = mask.sum(-1)
                for i in range(logits.shape[0]):
                    count = int(n[i])
                    out.append(
                        AnswerScore(
                            correct=bool(hits[i].all()) and count > 0,
                            nll=float(-logp[i].sum() / max(count, 1)),
                            tokens=count,
                        )
                    )
    finally:
        model.train(was_training)
    return out


def accuracy(scores: Sequence[AnswerScore]) -> float:
    """Fraction of known (teacher-forced correct) examples; NaN for none."""
    return sum(s.correct for s in scores) / len(scores) if scores else math.nan


def mean_nll(scores: Sequence[AnswerScore]) -> float:
    """Mean over examples of the per-token answer NLL; NaN for none."""
    return sum(s.nll for s in scores) / len(scores) if scores else math.nan


def check_groups(data: IcuData, splits: Sequence[str] = CHECK_SPLITS) -> dict[str, list[Example]]:
    """``"split/view"`` → the examples of that group (groups without rows are left out).

    ``holdout`` is refused: a stopping rule must not wait for the model to know never-trained profiles. The
    groups hold core QA rows only (``data.rows``): never the long-form rows, whose 30+ token summaries the
    fine-tune may also train on but which exact match is the wrong test of (they are scored by the
    ``icu_longform`` tasks), and never the paraphrase rows.
    """
    from icu_unlearn.training.data import examples_from_rows

    if HOLDOUT in splits:
        raise ConfigError("the holdout split is never trained, so it cannot be a group of the stopping rule")
    groups: dict[str, list[Example]] = {}
    for split in splits:
        for view in VIEWS:
            examples = examples_from_rows(data, data.rows(split=split, view=view))
            if examples:
                groups[f"{split}/{view}"] = examples
    return groups


def group_accuracy(
    model: torch.nn.Module, collator: Collator, groups: Mapping[str, Sequence[Example]], batch_size: int = 32
) -> dict[str, float]:
    """Teacher-forced accuracy of each group."""
    return {
        name: accuracy(answer_scores(model, collator, examples, batch_size=batch_size))
        for name, examples in groups.items()
    }


def format_scores(scores: Mapping[str, float]) -> str:
    """``forget/vqa 0.94, forget/qa 1.00, ...`` (for messages)."""
    return ", ".join(f"{k} {v:.2f}" for k, v in scores.items())


class _StopAtCheck(TrainerCallback):
    """Every ``check_every`` optimizer steps (and at the last step) run :meth:`check`; stop when it says so.

    ``history`` keeps one record per check (``{"step": s, ...}``); ``reached_step`` is the step at which the
    goal was met (``None`` until then). Every process of a data-parallel job checks the same synchronised
    weights, so all of them take the same decision.
    """

    def __init__(self, collator: Collator, target: float, check_every: int) -> None:
        self.collator = collator
        self.target = float(target)
        self.check_every = int(check_every)
        self.history: list[dict[str, Any]] = []
        self.reached_step: int | None = None

    def check(self, model: torch.nn.Module) -> tuple[dict[str, Any], bool]:
        """What to record for this check, and whether the goal is met."""
        raise NotImplementedError

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        if step % self.check_every and step < state.max_steps:
            return control
        record, done = self.check(model)
        self.history.append({"step": step, **record})
        if done:
            self.reached_step = step
            control.should_training_stop = True
        return control


class StopWhenKnown(_StopAtCheck):
    """Stop training once every group's teacher-forced accuracy reaches ``target`` (checks record
    ``{"step", "scores"}``)."""

    def __init__(
        self, groups: Mapping[str, Sequence[Example]], collator: Collator, target: float, check_every: int
    ) -> None:
        super().__init__(collator, target, check_every)
        self.groups = dict(groups)

    @property
    def last_scores(self) -> dict[str, float]:
        """The scores of the most recent check (empty before the first)."""
        return dict(self.history[-1]["scores"]) if self.history else {}

    def check(self, model: torch.nn.Module) -> tuple[dict[str, Any], bool]:
        scores = group_accuracy(model, self.collator, self.groups)
        done = bool(scores) and min(scores.values()) >= self.target
        return {"scores": {k: round(v, 4) for k, v in scores.items()}}, done


class StopWhenForgotten(_StopAtCheck):
    """Stop an unlearning stage once the teacher-forced accuracy on ``examples`` is at most ``target``
    (checks record ``{"step", "accuracy"}``; ``reached_step`` stays ``None`` if the stage runs to the cap)."""

    def __init__(
        self, examples: Sequence[Example], collator: Collator, target: float, check_every: int
    ) -> None:
        super().__init__(collator, target, check_every)
        self.examples = list(examples)

    def check(self, model: torch.nn.Module) -> tuple[dict[str, Any], bool]:
        acc = accuracy(answer_scores(model, self.collator, self.examples))
        return {"accuracy": round(acc, 4)}, acc <= self.target
