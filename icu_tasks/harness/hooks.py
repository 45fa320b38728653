"""The ``!function`` targets of the ICU-Bench lmms-eval task YAMLs (``task_yamls/``).

Where the docs come from
    lmms-eval YAMLs cannot read environment variables, so every task loads a one-line stub shipped next to
    the YAMLs (``dataset_path: json``, ``data_files: {test: _stub.jsonl}``; lmms-eval resolves the relative
    path against the YAML folder) and its ``process_docs`` hook (:func:`forget_vqa_docs`, ...) replaces the
    stub with the real rows of ``$ICU_DATA_DIR/qa.parquet`` (default ``./data/icu``, see
    :func:`icu_tasks.paths.default_data_dir`), filtered to the task's split and view. lmms-eval calls
    ``process_docs`` every time it builds a task, so changing ``ICU_DATA_DIR`` between runs (or between
    stages in one process) always scores the data dir named at that moment; the opened data dir is cached
    per process keyed by its path and the size/mtime of its files. The retain tasks score ``retain_eval``,
    the holdout tasks ``holdout`` (never-trained profiles), the ``_para`` tasks the paraphrase rows.
    lmms-eval's *opt-in* caches know nothing of the data dir: ``--cache_requests`` keys on the task name
    and ``--use_cache`` on task, doc id and prompt text (not the image), so do not reuse either across
    data dirs (the default runs use neither).

    A missing or invalid data dir raises :class:`DataUnavailable` with one line saying how to generate
    data. It derives from ``SystemExit`` on purpose: lmms-eval retries a failing dataset load five times
    (tenacity on ``Exception``) and its CLI then prints a traceback, logs a ``RetryError`` without our
    message and exits 0. A ``SystemExit`` passes both, so the CLI stops at once with ``error: <message>``
    on stderr and exit status 1. Python callers of ``simple_evaluate`` can catch it (``except
    SystemExit``); its ``__cause__`` is the loader's :class:`~icu_tasks.errors.DataError`.

    Which data was scored: the ``process_docs`` hook also writes the data dir's ``data_hash`` and path into
    the task's ``metadata`` (:func:`_record_data`), which lmms-eval saves in ``results.json`` under
    ``configs[<task>]["metadata"]`` — the evaluation's record of its data (see :mod:`icu_tasks.records.provenance`).

What lmms-eval writes (``--output_path OUT --log_samples``)
    ``OUT/<model>/<YYYYMMDD_HHMMSS>_results.json`` (``<model>`` = the last two path parts of
    ``pretrained=`` joined by ``__``) with ``results[task][f"{metric},none"]`` for the metrics
    ``exact_match``, ``contains``, ``rougeL_recall`` (generate tasks) or ``mc_accuracy`` (``_mc`` tasks),
    plus ``configs``, ``versions``, ``n-samples``, ``group_subtasks``; and one
    ``OUT/<model>/<same timestamp>_samples_<task>.jsonl`` per task, one JSON object per doc:
    ``doc_id``, ``target`` (the answer; the choice index as a string for ``_mc``), ``input`` (the user
    text), ``filtered_resps`` (the generated answer; for ``_mc`` one string ``"(loglikelihood, is_greedy)"``
    per choice), ``input_media`` (image path, VQA docs), ``token_counts``, ``doc_hash``, and under every
    metric key the payload dict ``{"id", "profile_id", "forget_task", "split", "view", "field",
    "prediction", <metrics>, "score"}`` (plus ``"phrasing": "paraphrase"`` for the ``_para`` tasks): the
    same fields under every key except ``score``, that metric's own per-doc value. lmms-eval drops the doc
    itself from the samples file, so the payload is where ``forget_task`` lives. The results file is written
    first, the samples files after it.

Standard errors and doc hashes
    lmms-eval 0.7.3 fills ``<metric>_stderr`` (the table's ``Stderr`` column) only for its own registered
    aggregations (``mean`` and a fixed bootstrappable list, ``api/metrics.py`` ``stderr_for_metric``) over
    plain numbers; a ``!function`` aggregation over dicts always gets ``N/A``. Its mechanism for dict-valued
    samples is the CLT standard error (``evaluator_utils.py`` ``calculate_clt_aggregate_metric``): it reads
    the per-doc value under the task's ``score_key`` (default ``score``) and writes
    ``<metric>_stderr_clt`` = sample std (ddof 1) / sqrt(n) — the formula ``mean``'s ``mean_stderr`` uses —
    and, with ``cluster_key``, ``<metric>_stderr_clustered`` (Miller 2024, "Adding Error Bars to Evals"),
    which counts the questions about one profile as correlated (``cluster_key: profile_id`` in
    ``_icu_common_yaml``). So every metric that is a mean over docs gets its per-doc value under ``score``
    (:func:`per_metric`); the membership-inference AUCs are not a mean over docs and lmms-eval cannot
    bootstrap a ``!function`` aggregation, so they carry no ``score`` and stay ``N/A``.
    The ``doc_hash`` of a sample is lmms-eval's hash of ``requests[0].doc``, an attribute lmms-eval's tasks
    never set (``construct_requests`` has ``doc=doc`` commented out), so without help every sample of every
    task hashes ``null``. ``icu_hf`` sets it to the doc it scores (:mod:`icu_unlearn.scoring.icu_hf`), so each
    sample's ``doc_hash`` is the SHA-256 of its own row (``json.dumps(doc, indent=2, ensure_ascii=False)``).
"""

from __future__ import annotations

import ast
import functools
import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from icu_tasks.data.schema import LONGFORM_FILE, MANIFEST_FILE, PARAPHRASE_FILE, QA_FILE
from icu_tasks.errors import ConfigError, DataError
from icu_tasks.harness import answer_metrics
from icu_tasks.harness.prompts import question_text
from icu_tasks.harness.task_table import KINDS, TaskSpec, docs_hooks
from icu_tasks.paths import DATA_ENV, default_data_dir
from icu_tasks.records.provenance import DATA_DIR_KEY, DATA_HASH_KEY
from icu_tasks.records.schedule import FORGET_TASKS_ENV, FORGET_TASKS_KEY, forget_task_filter, format_tasks

#: Metric keys of the generate_until tasks and of the multiple-choice tasks, as named in the YAMLs.
GENERATE_METRICS: tuple[str, ...] = tuple(answer_metrics.GENERATE_METRICS)
MC_METRICS: tuple[str, ...] = KINDS["mc"].metrics
_PAYLOAD_KEYS: tuple[str, ...] = ("id", "profile_id", "forget_task", "split", "view", "field")
#: Where a payload carries its metric's per-doc value for lmms-eval's CLT standard error (the default
#: ``score_key`` of lmms-eval's TaskConfig; see the module docstring).
SCORE_KEY = "score"

HOW_TO_GENERATE = "generate it with `icu-bench data generate --out DIR` and `export ICU_DATA_DIR=DIR`"


class DataUnavailable(SystemExit):
    """The task data cannot be read; ``str(err)`` is the one-line message (see the module docstring)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"error: {message}")
        self.message = message

    def __str__(self) -> str:
        return self.message


# --------------------------------------------------------------------------------------------------------
# The data dir


def _stat_key(root: Path) -> tuple:
    key: list = [str(root)]
    for name in (QA_FILE, PARAPHRASE_FILE, LONGFORM_FILE, MANIFEST_FILE):
        try:
            st = (root / name).stat()
            key.append((st.st_size, st.st_mtime_ns))
        except OSError:
            key.append(None)
    return tuple(key)


@functools.lru_cache(maxsize=4)
def _open_cached(key: tuple):
    from icu_tasks.data.dataset import open_data

    return open_data(Path(key[0]))


def open_task_data():
    """The :class:`icu_tasks.data.dataset.IcuData` at the current data dir, or raise :class:`DataUnavailable`."""
    root = default_data_dir().resolve()
    where = f"${DATA_ENV}" if os.environ.get(DATA_ENV) else "the default ./data/icu; set $ICU_DATA_DIR"
    if not root.exists():
        raise DataUnavailable(f"ICU-Bench data dir {root} (from {where}) does not exist; {HOW_TO_GENERATE}")
    if not root.is_dir():
        raise DataUnavailable(f"ICU-Bench data dir {root} (from {where}) is a file; {HOW_TO_GENERATE}")
    try:
        return _open_cached(_stat_key(root))
    except DataError as err:
        from icu_tasks.data import dataset

        problem = str(err).replace(f"; {dataset.HOW_TO_GENERATE}", "")  # ours below also says where to point
        raise DataUnavailable(f"invalid ICU-Bench data dir {root} ({problem}); {HOW_TO_GENERATE}") from err


def _record_data(data: Any, forget_tasks: frozenset[int] | None = None) -> None:
    """Write the data's hash and dir into the metadata of the lmms-eval task that is loading its docs.

    A forget task restricted by ``$ICU_FORGET_TASKS`` also records the selection (``icu_forget_tasks``).

    lmms-eval gives ``process_docs`` only the dataset, so the task is found as the ``self`` of the calling
    frame (``ConfigurableTask.download``); a caller that is not a task (a test, another harness) is left alone.
    The metadata also reaches every request's metadata, which nothing reads.
    """
    frame = sys._getframe(1)
    try:
        for _ in range(6):
            frame = frame.f_back
            if frame is None:
                return
            task = frame.f_locals.get("self")
            config = getattr(task, "config", None)
            if config is not None and hasattr(config, "metadata") and hasattr(config, "process_docs"):
                meta = config.metadata
                if meta is None or isinstance(meta, dict):
                    config.metadata = {
                        **(meta or {}),
                        DATA_HASH_KEY: data.data_hash,
                        DATA_DIR_KEY: str(data.root),
                    }
                    if forget_tasks is not None:
                        config.metadata[FORGET_TASKS_KEY] = format_tasks(forget_tasks)
                return
    finally:
        del frame


def _forget_filter() -> frozenset[int] | None:
    """The forget tasks ``$ICU_FORGET_TASKS`` selects (:mod:`icu_tasks.records.schedule`); bad text stops the run."""
    try:
        return forget_task_filter()
    except ConfigError as err:
        raise DataUnavailable(str(err)) from err


def _select(split: str, view: str | None, paraphrase: bool = False):
    data = open_task_data()
    tasks = _forget_filter() if split == "forget" else None
    _record_data(data, tasks)
    try:
        docs = data.dataset(split=split, view=view, forget_tasks=tasks, paraphrase=paraphrase)
    except ConfigError as err:  # a forget task the data does not have
        raise DataUnavailable(f"{FORGET_TASKS_ENV}={format_tasks(tasks or ())}: {err}") from err
    if len(docs) == 0:
        what = f"split {split!r}" + (f", view {view!r}" if view else "")
        if tasks is not None:
            what += f", forget tasks {format_tasks(tasks)} (from ${FORGET_TASKS_ENV})"
        rows = "paraphrase rows" if paraphrase else "rows"
        if data.manifest.get("format_version", 1) < 2:
            what += " (it was generated before the holdout split and the paraphrase file existed)"
        raise DataUnavailable(f"ICU-Bench data dir {data.root} has no {rows} for {what}; {HOW_TO_GENERATE}")
    return docs


# process_docs: the stub dataset lmms-eval loaded is ignored; the real rows replace it. One hook per row of the
# task table (``forget_vqa_docs``, ``retain_qa_para_docs``, ``utility_docs``, ...), made from the table.


def _docs(spec: TaskSpec) -> Callable[..., Any]:
    paraphrase = spec.phrasing == "paraphrase"

    def process_docs(dataset: Any = None):
        return _select(spec.data_split, spec.view, paraphrase=paraphrase)

    return process_docs


globals().update(docs_hooks(__name__, _docs))


# --------------------------------------------------------------------------------------------------------
# Doc → model inputs


def doc_to_visual(doc: Mapping[str, Any]) -> list:
    """``[PIL RGB image]`` of the doc's document view (masked for its field), or ``[]`` for a text-only row."""
    rel = doc.get("image")
    if not rel:
        return []
    return [open_task_data().load_image(rel)]


def doc_to_text(doc: Mapping[str, Any], lmms_eval_specific_kwargs: Mapping | None = None) -> str:
    """The user text (:func:`icu_tasks.harness.prompts.question_text`); no per-model prompt variants on purpose:
    what is scored must be what was trained."""
    return question_text(doc)


def doc_to_target(doc: Mapping[str, Any]) -> str:
    """The ground-truth answer string (generate tasks)."""
    return doc["answer"]


def doc_to_choice(doc: Mapping[str, Any]) -> list[str]:
    """The four answer options (multiple-choice tasks)."""
    return list(doc["choices"])


def mc_doc_to_target(doc: Mapping[str, Any]) -> int:
    """Index of the answer among the choices (multiple-choice tasks)."""
    choices = doc_to_choice(doc)
    try:
        return choices.index(doc["answer"])
    except ValueError:
        raise DataError(
            f"QA row {doc.get('id')!r}: answer {doc['answer']!r} is not among its choices"
        ) from None


# --------------------------------------------------------------------------------------------------------
# Scoring


def _payload(doc: Mapping[str, Any], prediction: str) -> dict[str, Any]:
    payload = {key: doc.get(key) for key in _PAYLOAD_KEYS}
    payload["forget_task"] = int(payload["forget_task"]) if payload["forget_task"] is not None else None
    if doc.get("phrasing"):  # paraphrase docs only: kept out of the continual matrices
        payload["phrasing"] = doc["phrasing"]
    payload["prediction"] = prediction
    return payload


def per_metric(payload: Mapping[str, Any], scores: Mapping[str, float]) -> dict[str, dict[str, Any]]:
    """One copy of ``payload`` per metric of ``scores``, each with that metric's per-doc value under
    :data:`SCORE_KEY`, from which lmms-eval computes the metric's ``_stderr_clt`` / ``_stderr_clustered``."""
    return {metric: {**payload, SCORE_KEY: float(value)} for metric, value in scores.items()}


def process_results(doc: Mapping[str, Any], results: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Score one generated answer; the payload goes under every metric key (:func:`per_metric`)."""
    prediction = results[0] if results else ""
    prediction = "" if prediction is None else str(prediction)
    target = doc["answer"]
    payload = _payload(doc, prediction)
    for name, metric in answer_metrics.GENERATE_METRICS.items():
        payload[name] = metric(prediction, target)
    return per_metric(payload, {key: payload[key] for key in GENERATE_METRICS})


_FLOAT_RE = re.compile(r"(?<![\w.])[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|inf)")


def loglikelihood_of(response: Any) -> float:
    """The loglikelihood of one ``loglikelihood`` response: a ``(float, bool)`` pair or its ``str()``.

    lmms-eval 0.7.3 stores non-text model outputs as ``str(output)`` (``unwrap_generation_output``), so
    a multiple-choice task receives ``"(-3.25, False)"`` instead of the model's tuple; both are accepted.
    """
    if isinstance(response, (tuple, list)):
        return float(response[0])
    if isinstance(response, (int, float)):
        return float(response)
    text = str(response)
    try:
        value = ast.literal_eval(text)
        return float(value[0] if isinstance(value, (tuple, list)) else value)
    except (ValueError, SyntaxError, TypeError, IndexError):
        match = _FLOAT_RE.search(text)  # e.g. "(np.float64(-3.25), False)"
        if match is None:
            raise ValueError(f"cannot read a loglikelihood from the model response {text!r}") from None
        return float(match.group(0))


def mc_process_results(doc: Mapping[str, Any], results: Sequence[Sequence[Any]]) -> dict[str, dict[str, Any]]:
    """Score one multiple-choice doc from its ``(loglikelihood, is_greedy)`` response per choice.

    The choice with the highest summed log-probability wins (lm-eval's ``acc``; no length normalisation).
    """
    choices = doc_to_choice(doc)
    lls = [loglikelihood_of(r) for r in results]
    if len(lls) != len(choices):
        raise ValueError(f"doc {doc.get('id')!r}: {len(lls)} loglikelihoods for {len(choices)} choices")
    payload = _payload(doc, choices[answer_metrics.mc_prediction(lls)])
    payload["mc_accuracy"] = answer_metrics.mc_accuracy(lls, mc_doc_to_target(doc))
    return per_metric(payload, {key: payload[key] for key in MC_METRICS})


def _mean_of(key: str) -> Callable[[Sequence[Mapping[str, Any]]], float]:
    def aggregate(items: Sequence[Mapping[str, Any]]) -> float:
        values = [float(item[key]) for item in items]
        return sum(values) / len(values) if values else math.nan

    aggregate.__name__ = f"aggregate_{key}"
    aggregate.__doc__ = f"Mean of the payloads' ``{key}`` (NaN for no docs)."
    return aggregate


# ``aggregate_<name>`` of every per-sample metric (the ``aggregation`` the task templates name).
globals().update({f"aggregate_{name}": _mean_of(name) for name in GENERATE_METRICS})
aggregate_mc_accuracy = _mean_of("mc_accuracy")
