"""The one table the lmms-eval task YAMLs of ``task_yamls/`` are generated from.

Every ICU-Bench task is one row of :data:`TASKS`: a :class:`TaskSpec` of split × view × phrasing × request
kind. The request kind (:data:`KINDS`) names the hand-written template the task includes (``_icu_*_yaml``:
output type, prompt hooks, ``process_results``, metrics), the module of its ``process_docs`` hook and how its
name is spelled; the row adds which rows it scores. The groups (:data:`GROUPS`) select rows of the table.
Regenerate the files after editing the table (:mod:`icu_tasks.harness.task_files`;
``tests/test_task_table.py`` fails while they differ)::

    python -m icu_tasks.harness.task_files            # writes task_yamls/
    python -m icu_tasks.harness.task_files --check    # exit 1 and name the files that differ

A new view comes from :data:`icu_tasks.data.schema.VIEWS` plus its line in :data:`VIEW_TEXT`; the
``process_docs`` hooks a row names must exist in its kind's module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from icu_tasks.data.schema import VIEWS
from icu_tasks.harness.answer_metrics import GENERATE_METRICS

#: ``metadata.version`` of every task and of every group (see CHANGELOG.md for what each bump changed).
TASK_VERSION = 1.2
GROUP_VERSION = 1.0


@dataclass(frozen=True)
class Kind:
    """A request kind: the template a task includes and how its name and ``process_docs`` hook are spelled.

    ``name`` and ``docs`` are format strings over ``split``, ``view`` and ``stem``
    (``<split>[_<view>][_para]``, e.g. ``forget_qa_para``). ``metrics`` are the lmms-eval metrics of its
    template, in order; each is aggregated by ``<module>.aggregate_<metric>``.
    """

    template: str
    module: str
    name: str
    docs: str
    text: str
    metrics: tuple[str, ...]


KINDS: dict[str, Kind] = {
    "generate": Kind(
        "_icu_generate_yaml",
        "icu_tasks.harness.hooks",
        "icu_{stem}",
        "{stem}_docs",
        "Free answer, greedy.",
        tuple(GENERATE_METRICS),
    ),
    "mc": Kind(
        "_icu_mc_yaml",
        "icu_tasks.harness.hooks",
        "icu_{stem}_mc",
        "{stem}_docs",
        "Multiple choice over the four options.",
        ("mc_accuracy",),
    ),
    "ll": Kind(
        "_icu_ll_yaml",
        "icu_tasks.harness.likelihood",
        "icu_ll_{stem}",
        "{stem}_docs",
        "Answer probability and truth ratio.",
        ("answer_prob", "truth_ratio", "truth_ratio_mean"),
    ),
    "mia": Kind(
        "_icu_mia_yaml",
        "icu_tasks.harness.mia",
        "icu_mia_{view}",
        "mia_{view}_docs",
        "Forget items (members) vs holdout items (non-members): AUC by loss and by zlib-normalised loss.",
        (
            "mia_privacy_loss",
            "mia_privacy_zlib",
            "mia_auc_loss",
            "mia_auc_zlib",
            "mia_gap_loss",
            "mia_gap_zlib",
        ),
    ),
    "longform": Kind(
        "_icu_longform_yaml",
        "icu_tasks.harness.longform",
        "icu_longform_{split}",
        "{split}_longform_docs",
        "Long-form summary of each profile: fluency and verbatim leakage of its private values.",
        ("longform_entropy", "longform_repetition", "longform_leakage"),
    ),
}

#: Which way each metric is better where it measures knowledge that should be *kept* (the retain and utility
#: splits, and every template): ``True`` higher, ``False`` lower, ``None`` no direction. The membership AUC
#: and its signed gap have none (0.5 is the ideal; 0 and 1 both identify the people): their directed form is
#: the privacy ``1 - 2|AUC - 0.5|``.
KEPT_DIRECTION: dict[str, bool | None] = {
    **dict.fromkeys(GENERATE_METRICS, True),
    "mc_accuracy": True,
    "answer_prob": True,
    "truth_ratio": True,  # retain: mean max(0, 1 - R), 1 = the truth is much more likely
    "truth_ratio_mean": False,  # R << 1: the model prefers the truth
    "mia_privacy_loss": True,
    "mia_privacy_zlib": True,
    **dict.fromkeys(("mia_auc_loss", "mia_auc_zlib", "mia_gap_loss", "mia_gap_zlib"), None),
    "longform_entropy": True,
    "longform_repetition": False,
    "longform_leakage": True,  # on retain: the private values the summary still recalls
}
#: Metrics that rise with knowledge of the scored people: on the forget split they are better lower.
#: (``truth_ratio`` is not one: on forget docs it is already ``min(R, 1/R)``, 1 = forgotten.)
KNOWLEDGE_METRICS: frozenset[str] = frozenset(
    (*GENERATE_METRICS, "mc_accuracy", "answer_prob", "truth_ratio_mean", "longform_leakage")
)

#: What each split of the table scores (``retain`` is the data's ``retain_eval`` split).
SPLIT_TEXT: dict[str, str] = {
    "forget": "Forget set (every forget task's profiles)",
    "retain": "Retain set (the held-out retain_eval profiles)",
    "holdout": "Holdout profiles (never trained by the fine-tune or any method: the base rate B[0])",
    "utility": "Utility: non-private questions (visible fields, public facts)",
}
#: The data's split behind a table split, where the names differ.
DATA_SPLITS: dict[str, str] = {"retain": "retain_eval"}
#: What each view shows the model; ``None``: both views (utility) or text only (long-form).
VIEW_TEXT: dict[str | None, str] = {
    "vqa": "image view (the masked document + a question about the person in it)",
    "qa": "text-only view (the person is named in the question)",
    None: "both views",
}
PHRASING_TEXT: dict[str, str] = {
    "core": "",
    "paraphrase": ", asked in the held-out paraphrase phrasing (qa_paraphrase.parquet; never trained)",
    "longform": ", text only (qa_longform.parquet)",
}


@dataclass(frozen=True)
class TaskSpec:
    """One task: which rows (split, view, phrasing) it scores and how it asks (``kind``, a key of :data:`KINDS`)."""

    split: str
    view: str | None
    phrasing: str
    kind: str
    version: float = TASK_VERSION

    @property
    def stem(self) -> str:
        """``<split>[_<view>][_para]``: the common part of the task and hook names."""
        para = "_para" if self.phrasing == "paraphrase" else ""
        return f"{self.split}{'_' + self.view if self.view else ''}{para}"

    @property
    def name(self) -> str:
        """The lmms-eval task name."""
        return KINDS[self.kind].name.format(split=self.split, view=self.view, stem=self.stem)

    @property
    def process_docs(self) -> str:
        """The dotted name of the ``process_docs`` hook."""
        kind = KINDS[self.kind]
        return f"{kind.module}.{kind.docs.format(split=self.split, view=self.view, stem=self.stem)}"

    @property
    def data_split(self) -> str:
        """The data's ``split`` value the task scores (the table's ``retain`` is ``retain_eval``)."""
        return DATA_SPLITS.get(self.split, self.split)

    def direction(self, metric: str) -> bool | None:
        """Whether ``metric`` is better higher (``True``), lower (``False``) or neither (``None``) on this task.

        Forget tasks invert the metrics of :data:`KNOWLEDGE_METRICS`; holdout tasks have no direction (they
        are the base rate B[0] of people no model saw).
        """
        kept = KEPT_DIRECTION[metric]
        if self.split == "holdout" or kept is None:
            return None
        return not kept if self.split == "forget" and metric in KNOWLEDGE_METRICS else kept

    @property
    def description(self) -> str:
        """The comment line of the task's YAML."""
        subject = "Membership inference" if self.kind == "mia" else SPLIT_TEXT[self.split]
        view = "" if self.phrasing == "longform" else f", {VIEW_TEXT[self.view]}"
        return f"{subject}{view}{PHRASING_TEXT[self.phrasing]}. {KINDS[self.kind].text}"


def _per_view(splits: Sequence[str], phrasing: str, kind: str) -> list[TaskSpec]:
    return [TaskSpec(split, view, phrasing, kind) for split in splits for view in VIEWS]


_CORE_SPLITS = ("forget", "retain", "holdout")
#: Every task, in the order the groups list them.
TASKS: tuple[TaskSpec, ...] = (
    *(
        spec
        for kind in ("generate", "mc", "ll")
        for spec in (*_per_view(_CORE_SPLITS, "core", kind), TaskSpec("utility", None, "core", kind))
    ),
    *(spec for kind in ("generate", "mc") for spec in _per_view(("forget", "retain"), "paraphrase", kind)),
    *(TaskSpec("forget", view, "core", "mia") for view in VIEWS),
    *(TaskSpec(split, None, "longform", "longform") for split in ("forget", "retain")),
)


def docs_hooks(module: str, make: Callable[[TaskSpec], Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """The ``process_docs`` hooks that the rows of :data:`TASKS` name in ``module``: hook name → ``make(spec)``,
    named and documented after its task. A hook module calls this once, so a new row needs no new function."""
    hooks: dict[str, Callable[..., Any]] = {}
    for spec in TASKS:
        owner, _, name = spec.process_docs.rpartition(".")
        if owner != module or name in hooks:
            continue
        hook = make(spec)
        hook.__name__ = hook.__qualname__ = name
        hook.__module__ = module
        hook.__doc__ = f"``process_docs`` of ``{spec.name}``: {spec.description}"
        hooks[name] = hook
    return hooks


@dataclass(frozen=True)
class GroupSpec:
    """An lmms-eval group: the table rows ``select`` keeps, in table order, and what the group is for."""

    name: str
    select: Callable[[TaskSpec], bool]
    text: str
    version: float = GROUP_VERSION

    def tasks(self) -> list[str]:
        """The names of the group's tasks."""
        return [spec.name for spec in TASKS if self.select(spec)]


GROUPS: tuple[GroupSpec, ...] = (
    GroupSpec(
        "icu",
        lambda s: s.kind == "generate" and s.phrasing == "core",
        "The seven ICU-Bench free-answer tasks (the holdout pair gives the base rate B[0]). No group aggregate "
        "on purpose: averaging forget with retain scores is meaningless; icu_tasks.report.results reads the "
        "per-task results (and the forget_task of every sample).",
    ),
    GroupSpec(
        "icu_mc",
        lambda s: s.kind == "mc" and s.phrasing == "core",
        "The seven ICU-Bench tasks scored as multiple choice (loglikelihood over the four options).",
    ),
    GroupSpec(
        "icu_para",
        lambda s: s.kind == "generate" and s.phrasing == "paraphrase",
        "The paraphrase view: forget and retain-eval rows asked in a held-out phrasing that no fine-tune or "
        "method ever trains on (does knowing, or forgetting, a fact carry over to new wording?). Not part of "
        '`icu`: score it with `--tasks icu,icu_para`. Samples carry "phrasing": "paraphrase" and stay out '
        "of the continual matrices.",
    ),
    GroupSpec(
        "icu_para_mc",
        lambda s: s.kind == "mc" and s.phrasing == "paraphrase",
        "The paraphrase view (held-out phrasing, never trained) scored as multiple choice.",
    ),
    GroupSpec(
        "icu_ll",
        lambda s: s.kind in ("ll", "mia"),
        "Probability-based metrics (TOFU answer probability and truth ratio) on every split, and membership "
        "inference forget vs holdout (MUSE-style AUC). No group aggregate on purpose, as for the group icu. "
        "Needs --model icu_hf and a data dir with a holdout split.",
    ),
    GroupSpec(
        "icu_longform",
        lambda s: s.kind == "longform",
        "The long-form view: fluency (entropy, repetition) and verbatim leakage of a one-or-two-sentence "
        "summary of each forget and retain-eval profile. Not part of `icu`: score it with "
        '`--tasks icu,icu_longform`. Samples carry "phrasing": "longform" and stay out of the continual '
        "matrices (icu_tasks.report.results reads them per stage as fluency and leakage rows).",
    ),
)
