"""Write lmms-eval output files (results JSON + samples JSONL) with lmms-eval 0.7.3's own code, for tests.

Each logged sample is built with ``evaluator._process_document_results`` (the code that turns a doc + its
requests + ``process_results`` into a sample record) and the files are written with its ``EvaluationTracker``
exactly as ``lmms_eval.__main__.cli_evaluate`` does (``save_results_aggregated`` then
``save_results_samples`` per task). Scoring goes through the task suite's real hooks. The aggregated
``results`` dict is reproduced with the keys ``simple_evaluate`` puts there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from icu_tasks.harness import hooks
from icu_tasks.harness import longform as longform_hooks

MODEL_ARGS = "pretrained=/models/icu/vanilla,adapter=RUN/stage_k,batch_size=8"


class _Task:
    """The attributes ``_process_document_results`` reads from an lmms-eval Task, wired to the real hooks."""

    class config:  # noqa: N801 - mirrors Task.config
        repeats = 1

    process_results = staticmethod(hooks.process_results)
    doc_to_target = staticmethod(hooks.doc_to_target)


class _LongformTask(_Task):
    process_results = staticmethod(longform_hooks.process_results)


class _McTask(_Task):
    process_results = staticmethod(hooks.mc_process_results)
    doc_to_target = staticmethod(hooks.mc_doc_to_target)


def doc(task: str, split: str, view: str, forget_task: int, i: int) -> dict:
    answer = f"value {task} {forget_task} {i}"
    return {
        "id": f"{split}-{view}-{forget_task}-{i}",
        "profile_id": f"p{forget_task}-{i}",
        "domain": "medical" if i % 2 else "labor",
        "field": "address",
        "view": view,
        "question": f"What is the address of person {i}?",
        "answer": answer,
        "choices": [answer, "wrong a", "wrong b", "wrong c"],
        "image": f"images/p{forget_task}-{i}_address.png" if view == "vqa" else None,
        "forget_task": forget_task,
        "split": split,
    }


def _prediction(doc: dict, correct: bool, i: int) -> str:
    if not correct:
        return "I do not know this person at all"
    return doc["answer"] if i % 2 == 0 else f"It is {doc['answer']}."  # exact match only for even i


def write_lmms_eval_output(
    out: Path, tasks: dict, date: str, model_args: str = MODEL_ARGS, mc: bool = False, longform: bool = False
) -> Path:
    """Write one evaluation's results JSON + samples JSONL the way the lmms-eval CLI does; returns the folder.

    ``longform``: the docs are long-form rows scored by the long-form hooks; a "correct" doc generates its
    answer, any other one the collapsed "the the the the".
    """
    from lmms_eval.api.instance import Instance
    from lmms_eval.evaluator import _process_document_results
    from lmms_eval.loggers import EvaluationTracker

    tracker = EvaluationTracker(output_path=str(out))
    tracker.general_config_tracker.log_experiment_args(
        model_source="icu_hf",
        model_args=model_args,
        system_instruction=None,
        chat_template=None,
        fewshot_as_multiturn=False,
    )
    samples, results = {}, {}
    for task, docs in tasks.items():
        logged, scores = [], []
        for doc_id, (doc, correct) in enumerate(docs):
            meta = {"task": task, "doc_id": doc_id, "repeats": 1}
            if mc:
                lls = [(-1.0 if (c == doc["answer"]) == correct else -5.0, False) for c in doc["choices"]]
                reqs = [
                    Instance(
                        "loglikelihood",
                        (doc["question"], c, lambda d: [], doc_id, task, "test"),
                        idx=i,
                        metadata=meta,
                    )
                    for i, c in enumerate(doc["choices"])
                ]
                for req, ll in zip(reqs, lls, strict=True):
                    req.resps, req.filtered_resps["none"] = [ll], ll
            else:
                pred = _prediction(doc, correct, doc_id)
                if longform:
                    pred = doc["answer"] if correct else "the the the the"
                gen_kwargs = {"max_new_tokens": 32, "until": ["\n"]}
                req = Instance(
                    "generate_until",
                    (doc["question"], gen_kwargs, lambda d: [], doc_id, task, "test"),
                    idx=0,
                    metadata=meta,
                )
                req.resps, req.filtered_resps["none"] = [pred], pred
                reqs = [req]
            for req in reqs:
                req.doc = doc
            processed = _process_document_results(
                (doc_id, doc, reqs),
                task=_McTask if mc else _LongformTask if longform else _Task,
                filter_key="none",
                reasoning_tags=None,
                log_samples=True,
            )
            logged.append(processed.logged_sample)
            scores.append(processed.metrics)
        samples[task] = logged
        metric_names = list(scores[0])
        results[task] = (
            {"alias": task}
            | {f"{m},none": float(np.mean([s[m][m] for s in scores])) for m in metric_names}
            | {f"{m}_stderr,none": "N/A" for m in metric_names}
        )
    n = {t: {"original": len(d), "effective": len(d)} for t, d in tasks.items()}
    aggregated = {
        "results": results,
        "group_subtasks": {t: [] for t in tasks},
        "configs": {
            t: {"task": t, "output_type": "multiple_choice" if mc else "generate_until"} for t in tasks
        },
        "versions": dict.fromkeys(tasks, 0.1),
        "n-shot": dict.fromkeys(tasks, 0),
        "higher_is_better": {t: dict.fromkeys(results[t], True) for t in tasks},
        "n-samples": n,
        "config": {"model": "icu_hf", "model_args": model_args, "batch_size": "8"},
        "date": date,
    }
    tracker.save_results_aggregated(results=aggregated, samples=samples, datetime_str=date)
    for task in aggregated["configs"]:
        tracker.save_results_samples(task_name=task, samples=samples[task])
    return Path(out) / tracker.general_config_tracker.model_name_sanitized
