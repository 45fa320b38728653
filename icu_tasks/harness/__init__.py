"""The lmms-eval side: what the task YAMLs call and how the tasks are installed.

:mod:`~icu_tasks.harness.hooks` (the ``!function`` doc builders and ``process_results`` of the generated and
multiple-choice tasks), :mod:`~icu_tasks.harness.likelihood` and :mod:`~icu_tasks.harness.mia` (loglikelihood
tasks), :mod:`~icu_tasks.harness.longform` (long-form generations), :mod:`~icu_tasks.harness.answer_metrics`
(per-sample answer metrics), :mod:`~icu_tasks.harness.prompts` (the user text of a question),
:mod:`~icu_tasks.harness.install` and :mod:`~icu_tasks.harness.cli` (``icu-bench tasks``),
:mod:`~icu_tasks.harness.torchvision_check` (a torchvision that does not fit torch, which stops lmms-eval);
:mod:`~icu_tasks.harness.task_table` is the table the task YAMLs of ``task_yamls/`` are generated from.

May import: :mod:`icu_tasks.records`, :mod:`icu_tasks.data`, :mod:`icu_tasks.continual`; knows nothing of models.
"""
