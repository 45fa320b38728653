"""Training examples from an ICU-Bench data dir, and the collator that turns them into model inputs.

An :class:`Example` is one QA row as the model sees it: the user text from
:func:`icu_tasks.harness.prompts.question_text` (the exact text lmms-eval scores), the row's image (VQA view) or none
(QA view), and the answer. The collator calls :func:`icu_unlearn.models.encoding.encode`, the one function that also
builds inputs for generation and log-likelihood scoring, so what is trained is what is scored.

:func:`quick_accuracy` scores examples the way the lmms-eval generate tasks do (greedy answers through
``icu_unlearn.models.inference``, exact match from ``icu_tasks.harness.answer_metrics``): the check ``icu-bench finetune --check`` and
the tests use.

Sets: the fine-tune trains on every core row of the known splits (all forget tasks, retain-train, retain-eval,
utility: the vanilla model must know everything that is later scored as known), plus, when enabled, the long-form
row of each profile of those splits ("Summarise the <record> of <name>.", ``qa_longform.parquet``) so that its
summaries can be scored for fluency and leakage; an unlearning stage gets forget task *k* (both views; its core QA
rows only, not the long-form row: the forget set of the recipe is the forget task's QA rows, and the long-form
row then measures whether forgetting the short answers also removes the values from free text) and
retain-train (never retain-eval, which is only scored). Never trained, by anything:
the ``holdout`` split (profiles the vanilla model must not know: the base rate) and the paraphrase rows (the
held-out phrasing, a separate file). :func:`check_trainable` enforces this wherever a training set is built.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icu_tasks.data.schema import HOLDOUT, KNOWN_SPLITS, LONGFORM
from icu_tasks.errors import DataError
from icu_tasks.harness.answer_metrics import exact_match
from icu_tasks.harness.prompts import question_text
from icu_unlearn.models.inference import generate_texts
from icu_unlearn.training.distributed import per_device_batch
from icu_unlearn.training.row_encodings import RowEncodings, encode_examples, load_image

if TYPE_CHECKING:
    from icu_tasks.data.dataset import IcuData


@dataclass(frozen=True)
class Example:
    """One training sample. ``image`` is an absolute path to the PNG (VQA view) or ``None`` (QA view)."""

    id: str
    question: str
    answer: str
    image: Path | None
    view: str
    split: str
    forget_task: int
    field: str = ""
    phrasing: str = "core"


def examples_from_rows(data: IcuData, rows: Sequence[dict[str, Any]]) -> list[Example]:
    """Examples for QA rows of ``data`` (question text via ``icu_tasks.harness.prompts.question_text``)."""

    out = []
    for row in rows:
        rel = row.get("image")
        out.append(
            Example(
                id=str(row["id"]),
                question=question_text(row),
                answer=str(row["answer"]),
                image=data.image_path(rel) if rel else None,
                view=str(row["view"]),
                split=str(row["split"]),
                forget_task=int(row["forget_task"]),
                field=str(row.get("field") or ""),
                phrasing=str(row.get("phrasing") or "core"),
            )
        )
    return out


def check_trainable(examples: Sequence[Example], what: str, *, longform: bool = False) -> None:
    """Raise :class:`DataError` if a training set holds a holdout or a paraphrase example (neither is ever
    trained: one is the never-seen base rate, the other the held-out phrasing), or a long-form example
    unless ``longform`` (only the fine-tune trains on those)."""

    allowed = ("core", LONGFORM) if longform else ("core",)
    for e in examples:
        if e.split == HOLDOUT or e.phrasing not in allowed:
            kind = (
                "holdout"
                if e.split == HOLDOUT
                else "longform (summary; only the fine-tune trains it)"
                if e.phrasing == LONGFORM
                else f"{e.phrasing} (held-out phrasing)"
            )
            raise DataError(f"{what} must never train on {kind} rows, got {e.id!r}")


def finetune_examples(data: IcuData, vqa_repeat: int = 1, longform: bool = False) -> list[Example]:
    """Every core row of the known splits (forget, retain-train, retain-eval, utility; both views; never
    ``holdout``, never a paraphrase), in file order; with ``longform`` then the long-form row of every
    profile of those splits (once each; a data dir without the long-form file is a :class:`DataError`).

    ``vqa_repeat`` > 1 lists every image (VQA) row that many times: the image view needs about twice the
    epochs of the text view to be memorised, so an epoch of the fine-tune shows it more often instead of spending the extra epochs on the text view too.
    """
    if vqa_repeat < 1:
        raise DataError(f"vqa_repeat must be >= 1, got {vqa_repeat}")

    examples = examples_from_rows(data, [r for r in data.rows() if r["split"] in KNOWN_SPLITS])
    if not examples:
        raise DataError(f"data dir {data.root} has no QA rows to fine-tune on")
    out = [e for e in examples for _ in range(vqa_repeat if e.image is not None else 1)]
    if longform:
        rows = [r for r in data.longform() if r["split"] in KNOWN_SPLITS]
        if not rows:
            raise DataError(
                f"data dir {data.root} has no long-form rows (generated before qa_longform.parquet existed); "
                "regenerate it or fine-tune with --no-longform"
            )
        out += examples_from_rows(data, rows)
    return out


class Collator:
    """``list[Example]`` → model inputs with answer-only ``labels`` (through ``encoding.encode``).

    Each row is encoded once and kept (:class:`icu_unlearn.training.row_encodings.RowEncodings`): a batch is assembled
    from the rows' tensors, equal to encoding the batch at once, without preprocessing every image again each
    epoch.

    Given a list of :class:`StepBatches` items (``{"forget": [Example], "retain": [Example] | None}``) it
    returns ``{"forget": inputs, "retain": inputs | None}`` over all of them.
    """

    def __init__(self, processor: Any, split_longform: bool = False) -> None:
        self.processor = processor
        self.split_longform = split_longform
        self._memo: RowEncodings | None = RowEncodings(processor)

    def encode(self, examples: Sequence[Example]) -> dict[str, Any]:
        if not examples:
            raise DataError("cannot collate an empty batch")
        if self._memo is not None:
            batch = self._memo.collate([self._memo.row(e) for e in examples])
            if batch is not None:
                return batch
            self._memo = None  # this processor's tensors do not concatenate: encode whole batches from now on
        return encode_examples(self.processor, examples)

    def __call__(self, items: Sequence[Any]) -> dict[str, Any]:
        if items and isinstance(items[0], Example):
            return self.encode_parts(items) if self.split_longform else self.encode(items)
        forget = [e for it in items for e in it["forget"]]
        retain = [e for it in items for e in (it.get("retain") or [])]
        return {"forget": self.encode(forget), "retain": self.encode(retain) if retain else None}

    def encode_parts(self, examples: Sequence[Example]) -> dict[str, Any]:
        """One batch of the fine-tune with its long-form rows (several times longer than a QA row) padded
        apart: ``{"parts": [short rows, long-form rows]}``, or the plain encoding when there are none. The
        batch's composition and its loss (:func:`icu_unlearn.methods.losses.nll_loss_parts`) are those of the whole
        batch; only the padding, and so the compute, shrinks."""

        long = [e for e in examples if e.phrasing == LONGFORM]
        short = [e for e in examples if e.phrasing != LONGFORM]
        if not long or not short:
            return self.encode(examples)
        return {"parts": [self.encode(short), self.encode(long)]}


class ExampleDataset:
    """A map-style dataset over examples (the fine-tune's training set)."""

    def __init__(self, examples: Sequence[Example]) -> None:
        self.examples = list(examples)
        check_trainable(self.examples, "the fine-tune", longform=True)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Example:
        return self.examples[i]


class StepBatches:
    """Item ``i`` = the ``i``-th micro-batch of an unlearning stage: ``{"forget": [...], "retain": [...] | None}``.

    The forget examples are walked through in a seeded random order that is drawn anew after every pass
    (``forget_size`` ≥ the task's size puts the whole task, shuffled, in every item); the retain examples the
    same, independently. Items depend only on ``i`` and the seed, so the Trainer reads them with a sequential
    sampler and a per-device batch of one item; under data parallelism consecutive items go to the processes in
    turn, so the sizes given here are per process.

    Args:
        forget: the stage's forget examples; ``retain``: retain-train examples, or ``None`` when unused.
        forget_size / retain_size: examples per item (per process); ``0`` for forget = the whole task.
        length: the number of items (micro-batches over all processes and steps).
        seed: the seed of the orders.
    """

    def __init__(
        self,
        forget: Sequence[Example],
        retain: Sequence[Example] | None,
        forget_size: int,
        retain_size: int,
        length: int,
        seed: int = 0,
    ) -> None:
        if not forget:
            raise DataError("the forget set is empty")
        self.forget, self.retain = list(forget), list(retain) if retain else None
        check_trainable(self.forget, "an unlearning stage's forget set")
        check_trainable(self.retain or [], "a retain term")
        self.forget_size = min(forget_size, len(self.forget)) if forget_size else len(self.forget)
        self.retain_size = retain_size
        self.length, self.seed = length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, list[Example] | None]:
        if not 0 <= i < self.length:
            raise IndexError(i)
        forget = _window(self.forget, self.forget_size, i, self.seed)
        retain = _window(self.retain, self.retain_size, i, self.seed + 1) if self.retain else None
        return {"forget": forget, "retain": retain}


def _window(items: list[Example], size: int, i: int, seed: int) -> list[Example]:
    """Examples ``i*size … (i+1)*size − 1`` of the endless stream of seeded permutations of ``items``."""
    out = []
    for pos in range(i * size, (i + 1) * size):
        n_pass, offset = divmod(pos, len(items))
        order = _permutation(len(items), seed, n_pass)
        out.append(items[order[offset]])
    return out


@functools.lru_cache(maxsize=64)
def _permutation(n: int, seed: int, n_pass: int) -> tuple[int, ...]:
    """The order of pass ``n_pass`` over ``n`` items (Python's seeded Mersenne Twister: the same everywhere)."""
    import random

    order = list(range(n))
    random.Random(f"{seed}:{n_pass}").shuffle(order)
    return tuple(order)


def step_batches(data: StageData, cfg: Any, uses_retain: bool, processes: int = 1) -> StepBatches:
    """The micro-batches of a stage trained with ``cfg`` (a ``TrainingMethodConfig``) on ``processes`` processes.

    ``cfg.batch_size`` forget and ``cfg.retain_batch_size`` retain examples per micro-batch, global (split over
    the processes; a size that does not divide is a ConfigError). ``batch_size = 0`` is the whole forget task:
    ``ceil(F / processes)`` per process, so the processes' items of one micro-batch cover every forget row.
    ``retain_batch_size = 0`` (or a config without it) is as many retain as forget examples. A batch size above
    the forget task's size is the whole task.
    """

    forget_global = cfg.batch_size or len(data.forget)
    forget_size = per_device_batch(cfg.batch_size) if cfg.batch_size else -(-len(data.forget) // processes)
    retain_size = 0
    if uses_retain:
        retain_cfg = getattr(cfg, "retain_batch_size", 0)
        retain_size = per_device_batch(retain_cfg) if retain_cfg else -(-forget_global // processes)
    length = cfg.max_steps * cfg.gradient_accumulation_steps * processes
    retain = data.retain if uses_retain else None
    return StepBatches(data.forget, retain, forget_size, retain_size, length, cfg.seed)


@dataclass
class StageData:
    """What an unlearning stage trains on.

    Attributes:
        forget: the forget task(s) of this stage, both views.
        retain: retain-train, both views (what a retain term may train on).
        collator: the :class:`Collator` (the training loop's and the methods' own passes).
        task_ids: the forget task ids of this stage.
        data_hash: the data dir's content hash (recorded in stage.json).
    """

    forget: list[Example]
    retain: list[Example]
    collator: Collator = field(repr=False)
    task_ids: list[int] = field(default_factory=list)
    data_hash: str = ""

    def __post_init__(self) -> None:
        check_trainable(self.forget, "an unlearning stage's forget set")
        check_trainable(self.retain, "a retain term")

    def collate(self, examples: Sequence[Example]) -> dict[str, Any]:
        """``list[Example]`` → model inputs (for methods that run their own passes: Fisher, MANU)."""
        return self.collator.encode(examples)


def stage_data(data: IcuData, task_ids: Sequence[int], processor: Any) -> StageData:
    """Forget task(s) ``task_ids`` and retain-train of ``data``; unknown or empty tasks → DataError."""
    task_ids = [int(t) for t in task_ids]
    unknown = sorted(set(task_ids) - {int(t) for t in data.task_ids})
    if unknown:
        raise DataError(
            f"forget task(s) {unknown} not in data dir {data.root} (it has tasks {min(data.task_ids)}..{max(data.task_ids)})"
            if data.task_ids
            else f"data dir {data.root} has no forget tasks"
        )
    forget = examples_from_rows(data, data.forget(task_ids))
    if not forget:
        raise DataError(f"forget task(s) {task_ids} of {data.root} have no rows")
    retain = examples_from_rows(data, data.retain("train"))
    if not retain:
        raise DataError(f"data dir {data.root} has no retain_train rows")
    return StageData(forget, retain, Collator(processor), task_ids, str(data.data_hash))


# ----------------------------------------------------------------------------------------------- quick check


def quick_accuracy(
    model: Any, processor: Any, examples: list, *, batch_size: int = 32, max_new_tokens: int = 32
) -> float:
    """Exact-match accuracy (``icu_tasks.harness.answer_metrics``) of greedy answers (``icu_unlearn.models.inference``) on examples.

    Decoding as the lmms-eval generate tasks do it: greedy, ``max_new_tokens`` 32, cut at the first newline.
    """

    if not examples:
        return float("nan")
    was_training = model.training
    model.eval()
    try:
        answers = generate_texts(
            model,
            processor,
            [e.question for e in examples],
            [load_image(e.image) for e in examples],
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            until=["\n"],
        )
    finally:
        model.train(was_training)
    return sum(exact_match(a, e.answer) for a, e in zip(answers, examples, strict=True)) / len(examples)
