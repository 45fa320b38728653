"""``!function`` targets of the ``icu_ll_*`` tasks: answer probability and truth ratio (TOFU).

Greedy exact match is binary; a model can still give a "forgotten" answer almost the probability it had before.
These tasks score the gold answer and its three distractors (the row's ``choices``: the same field's values of
other profiles) by log-likelihood, exactly as the ``_mc`` tasks do, and report TOFU's probability-based metrics
(Maini et al., "TOFU: A Task of Fictitious Unlearning for LLMs", COLM 2024, §2.5; the same definitions as the
OpenUnlearning code base).

How a length is counted
    ``icu_hf`` scores a continuation as the assistant turn, exactly as answers are trained: the scored tokens are
    the answer as the model's tokenizer splits it **plus the chat template's end-of-turn token(s)** — the
    training labels. ``n`` below counts those tokens (TOFU's labels likewise include the closing EOS). The
    tasks' docs carry :data:`TOKEN_COUNT_KEY`, which makes ``icu_hf`` append ``n`` to each response:
    ``"(loglikelihood, is_greedy, n_tokens)"``. A model without it (lmms-eval's own wrappers) cannot run these
    tasks: the error says so.

Per item (``NLL(a)`` = minus the summed log-probability of the scored tokens of answer ``a``, ``n(a)`` = their
count, ``L(a) = NLL(a) / n(a)`` the mean per-token loss, ``W`` = the wrong options)
    * answer probability ``P = exp(-L(gold))`` = P(gold | question, image)^(1/n(gold));
    * truth ratio ``R = exp(L(gold) - mean_{w in W} L(w))`` = geometric mean over W of the length-normalised
      wrong-option probabilities divided by the gold one's. This is the TOFU code's form (the mean over
      perturbed answers taken in log space; the paper writes an arithmetic mean); TOFU uses a paraphrase of
      the answer in the denominator, ICU-Bench the gold answer itself. R << 1: the model prefers the truth;
      R ~ 1: it cannot tell the truth from plausible wrong values; R > 1: it prefers wrong values.

Aggregates (lmms-eval metrics of every ``icu_ll_*`` task)
    * ``answer_prob``: mean P;
    * ``truth_ratio``: the statistic TOFU reports, which depends on the split: on **forget** docs
      ``mean(min(R, 1/R))`` (1 = the truth is no more likely than wrong values: forgotten), on every other split
      ``mean(max(0, 1 - R))`` (1 = the truth is much more likely: knowledge kept);
    * ``truth_ratio_mean``: mean R, the raw ratio, for curves.

Every sample (``--log_samples``) logs the payload ``{"id", "profile_id", "forget_task", "split", "view",
"field", "prediction", "gold_index", "option_nll", "option_tokens", "answer_nll", "answer_tokens",
"answer_prob", "truth_ratio", "score"}`` under each metric key, enough to recompute every number above;
``score`` is the doc's term of that metric's mean (P, the split's truth-ratio term, R), from which lmms-eval
computes the metric's standard error (:func:`icu_tasks.harness.hooks.per_metric`).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from icu_tasks.harness import answer_metrics
from icu_tasks.harness.hooks import (
    DataUnavailable,
    _payload,
    _record_data,
    _select,
    doc_to_choice,
    mc_doc_to_target,
    open_task_data,
    per_metric,
)
from icu_tasks.harness.task_table import KINDS, TaskSpec, docs_hooks

#: Doc column that asks ``icu_hf`` for ``(loglikelihood, is_greedy, n_tokens)`` responses.
TOKEN_COUNT_KEY = "icu_token_count"
#: The split of never-fine-tuned profiles (``forget_task == 0``), the non-members of membership inference.
HOLDOUT_SPLIT = "holdout"
NO_HOLDOUT = "this data dir has no holdout split; regenerate with icu-bench data generate"
#: Metric keys of the ``icu_ll_*`` tasks, as named in the YAMLs.
LL_METRICS: tuple[str, ...] = KINDS["ll"].metrics


class ScoresUnavailable(SystemExit):
    """The model's responses lack what a likelihood task needs; ``str(err)`` is the one-line message.

    A ``SystemExit`` for the same reason as :class:`icu_tasks.harness.hooks.DataUnavailable`: lmms-eval retries a
    failing ``process_results`` and then hides the message behind a ``RetryError``.
    """

    def __init__(self, message: str) -> None:
        super().__init__(f"error: {message}")
        self.message = message

    def __str__(self) -> str:
        return self.message


# --------------------------------------------------------------------------------------------------------
# Docs


def split_rows(split: str, view: str | None) -> list[dict[str, Any]]:
    """The QA rows of one split (and view), each with :data:`TOKEN_COUNT_KEY` set; raise if there are none.

    Every split but the holdout goes through the generate tasks' own selection (``icu_tasks.harness.hooks._select``:
    the data record in results.json, the same rows, the same errors). Holdout rows are filtered here, so that
    a data dir made before the holdout split existed gets the one-line :data:`NO_HOLDOUT` error.
    """
    if split != HOLDOUT_SPLIT:
        return [dict(r, **{TOKEN_COUNT_KEY: True}) for r in _select(split, view).to_list()]
    data = open_task_data()
    _record_data(data)
    rows = [dict(r, **{TOKEN_COUNT_KEY: True}) for r in data.rows(view=view) if r["split"] == split]
    if not rows:
        raise DataUnavailable(f"{NO_HOLDOUT} ({data.root})")
    return rows


def as_dataset(rows: list[dict[str, Any]]):
    """A ``datasets.Dataset`` of the rows (the QA columns plus the extra ones these tasks add)."""
    from datasets import Dataset

    return Dataset.from_list(rows)


def _docs(spec: TaskSpec) -> Callable[..., Any]:
    def process_docs(dataset: Any = None):
        split = HOLDOUT_SPLIT if spec.data_split == "holdout" else spec.data_split  # read at call time
        return as_dataset(split_rows(split, spec.view))

    return process_docs


# One ``process_docs`` hook per ``icu_ll_*`` row of the task table (``forget_vqa_docs``, ``utility_docs``, ...).
globals().update(docs_hooks(__name__, _docs))


# --------------------------------------------------------------------------------------------------------
# Responses


def scored_response(response: Any) -> tuple[float, int]:
    """``(loglikelihood, n_tokens)`` of one ``icu_hf`` response ``(ll, is_greedy, n_tokens)`` or its ``str()``.

    Raises :class:`ScoresUnavailable` for a response without the token count (a model other than ``icu_hf``).
    """
    value = response
    if isinstance(response, str):
        try:
            value = ast.literal_eval(response)
        except (ValueError, SyntaxError):
            value = None
    if not isinstance(value, (tuple, list)) or len(value) < 3:
        raise ScoresUnavailable(
            f"the icu_ll / icu_mia tasks need the scored token count in each loglikelihood response, got "
            f"{response!r}; run them with --model icu_hf"
        )
    ll, n_tokens = float(value[0]), int(value[2])
    if n_tokens < 1:
        raise ScoresUnavailable(f"loglikelihood response {response!r} scored no tokens")
    return ll, n_tokens


def truth_ratio_of(option_nll: Sequence[float], option_tokens: Sequence[int], gold: int) -> float:
    """TOFU's per-item truth ratio ``R = exp(L(gold) - mean_wrong L(w))`` with ``L = NLL / n`` (module doc)."""
    losses = [nll / n for nll, n in zip(option_nll, option_tokens, strict=True)]
    wrong = [loss for i, loss in enumerate(losses) if i != gold]
    if not wrong:
        raise ValueError("a truth ratio needs at least one wrong option")
    return math.exp(losses[gold] - sum(wrong) / len(wrong))


def process_results(doc: Mapping[str, Any], results: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """Score one doc from its four ``(loglikelihood, is_greedy, n_tokens)`` responses (gold + distractors)."""
    choices = doc_to_choice(doc)
    scored = [scored_response(r) for r in results]
    if len(scored) != len(choices):
        raise ValueError(f"doc {doc.get('id')!r}: {len(scored)} responses for {len(choices)} choices")
    gold = mc_doc_to_target(doc)
    lls = [ll for ll, _ in scored]
    payload = _payload(doc, choices[answer_metrics.mc_prediction(lls)])
    option_nll = [-ll for ll in lls]
    option_tokens = [n for _, n in scored]
    payload.update(
        gold_index=gold,
        option_nll=option_nll,
        option_tokens=option_tokens,
        answer_nll=option_nll[gold],
        answer_tokens=option_tokens[gold],
        answer_prob=math.exp(-option_nll[gold] / option_tokens[gold]),
        truth_ratio=truth_ratio_of(option_nll, option_tokens, gold),
    )
    ratio = payload["truth_ratio"]
    scores = {
        "answer_prob": payload["answer_prob"],
        "truth_ratio": truth_ratio_term(ratio, str(doc["split"])),
        "truth_ratio_mean": ratio,
    }
    return per_metric(payload, scores)


# --------------------------------------------------------------------------------------------------------
# Aggregation


def _values(items: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    return [float(item[key]) for item in items]


def aggregate_answer_prob(items: Sequence[Mapping[str, Any]]) -> float:
    """Mean length-normalised gold-answer probability (NaN for no docs)."""
    values = _values(items, "answer_prob")
    return sum(values) / len(values) if values else math.nan


def aggregate_truth_ratio_mean(items: Sequence[Mapping[str, Any]]) -> float:
    """Mean raw truth ratio R (NaN for no docs)."""
    values = _values(items, "truth_ratio")
    return sum(values) / len(values) if values else math.nan


def truth_ratio_term(ratio: float, split: str) -> float:
    """One doc's term of :func:`truth_ratio_statistic`: forget ``min(R, 1/R)``, else ``max(0, 1 - R)``."""
    return min(ratio, 1.0 / ratio) if split == "forget" else max(0.0, 1.0 - ratio)


def truth_ratio_statistic(ratios: Sequence[float], split: str) -> float:
    """TOFU's reported truth-ratio statistic: forget ``mean(min(R, 1/R))``, else ``mean(max(0, 1 - R))``."""
    if not ratios:
        return math.nan
    return sum(truth_ratio_term(r, split) for r in ratios) / len(ratios)


def aggregate_truth_ratio(items: Sequence[Mapping[str, Any]]) -> float:
    """:func:`truth_ratio_statistic` of the docs' ratios; the docs must come from one split."""
    splits = {str(item["split"]) for item in items}
    if len(splits) > 1:
        raise ValueError(f"truth_ratio aggregates one split at a time, got {sorted(splits)}")
    return truth_ratio_statistic(_values(items, "truth_ratio"), splits.pop() if splits else "forget")
