"""ICU-Bench tasks inside an existing lmms-eval Python pipeline, next to another task.

The ICU tasks are plain lmms-eval task YAMLs: give their folder to ``TaskManager(include_path=...)`` together
with your own task folders and call ``lmms_eval.evaluator.simple_evaluate`` as usual. The data dir comes from
``$ICU_DATA_DIR`` (``--data`` sets it here). Example (tiny model, small data, all offline)::

    icu-bench data generate --out /tmp/icu --profiles 40 --tasks 4
    icu-bench model build-tiny --out /tmp/tiny --data /tmp/icu
    python examples/reuse_in_pipeline.py --data /tmp/icu --model-args pretrained=/tmp/tiny

By default the "other task" is ``my_pipeline_arith``, a stand-in for a task your pipeline already has: a
five-question text task written to a temporary folder and scored with lmms-eval's built-in ``exact_match``.
With the hub reachable, use one of lmms-eval's own tasks instead: ``--other-task mme --include-defaults``.

The per-sample payloads carry each forget doc's ``forget_task``, so one evaluation also gives one row of
the continual matrix A[k][j]; the script prints it at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

OTHER_TASK_YAML = """\
task: my_pipeline_arith
dataset_path: json
dataset_kwargs:
  data_files:
    test: arith.jsonl
test_split: test
output_type: generate_until
doc_to_text: "{{question}}"
doc_to_target: answer
generation_kwargs:
  max_new_tokens: 8
  do_sample: false
  until: ["\\n"]
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: true
    ignore_punctuation: true
metadata:
  version: 1.0
"""


def write_other_task(folder: Path) -> None:
    """A minimal text-only lmms-eval task, standing in for a task of your own pipeline."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "my_pipeline_arith.yaml").write_text(OTHER_TASK_YAML)
    with open(folder / "arith.jsonl", "w") as f:
        for a, b in [(2, 3), (7, 5), (10, 4), (6, 6), (9, 1)]:
            f.write(json.dumps({"question": f"What is {a} + {b}?", "answer": str(a + b)}) + "\n")


def forget_row(samples: list[dict], metric: str = "exact_match") -> dict[int, float]:
    """Mean ``metric`` per forget task id over one task's logged samples (one row of A[k][j])."""
    per_task: dict[int, list[float]] = defaultdict(list)
    for sample in samples:
        payload = sample[metric]
        per_task[int(payload["forget_task"])].append(float(payload[metric]))
    return {j: sum(v) / len(v) for j, v in sorted(per_task.items())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="icu_hf", help="lmms-eval model name (default: icu_hf)")
    parser.add_argument("--model-args", required=True, help="e.g. pretrained=DIR[,adapter=STAGE_DIR]")
    parser.add_argument("--data", help="ICU-Bench data dir (sets ICU_DATA_DIR; default: $ICU_DATA_DIR)")
    parser.add_argument("--tasks", default="icu", help="ICU tasks or groups, comma-separated (default: icu)")
    parser.add_argument("--other-task", default="my_pipeline_arith", help="a non-ICU task to run alongside")
    parser.add_argument("--include-defaults", action="store_true", help="also index lmms-eval's own tasks")
    parser.add_argument("--limit", type=int, default=None, help="docs per task (testing only)")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)

    if args.data:
        os.environ["ICU_DATA_DIR"] = str(Path(args.data).resolve())

    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager
    from lmms_eval.utils import make_table

    from icu_tasks.paths import task_yamls_dir

    with tempfile.TemporaryDirectory(prefix="my_pipeline_tasks_") as tmp:
        include_path = [str(task_yamls_dir())]
        if args.other_task == "my_pipeline_arith":
            write_other_task(Path(tmp))
            include_path.append(tmp)
        task_manager = TaskManager(
            "WARNING", include_path=include_path, include_defaults=args.include_defaults
        )
        results = simple_evaluate(
            model=args.model,
            model_args=args.model_args,
            tasks=[*args.tasks.split(","), args.other_task],
            task_manager=task_manager,
            batch_size=args.batch_size,
            limit=args.limit,
            log_samples=True,
            verbosity="WARNING",
        )
    if results is None:  # not the main process of a distributed run
        return 0

    print(make_table(results))
    if "groups" in results:
        print(make_table(results, "groups"))
    for task in ("icu_forget_vqa", "icu_forget_qa"):
        if task in results.get("samples", {}):
            row = forget_row(results["samples"][task])
            print(
                f"{task}: exact match per forget task: " + ", ".join(f"{j}: {v:.2f}" for j, v in row.items())
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
