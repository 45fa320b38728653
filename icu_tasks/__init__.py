"""ICU-Bench tasks: the data, the lmms-eval task hooks and the continual metrics — everything but models.

What lives here, by sub-package: :mod:`icu_tasks.data` (the data contract, generation and loading);
:mod:`icu_tasks.continual` (continual matrices, metrics, report and figures from result files). At the top
level, the lmms-eval side: the ``!function`` hooks the task YAMLs call (:mod:`~icu_tasks.hooks`), the user text
of a question (:mod:`~icu_tasks.prompts`), per-sample answer metrics (:mod:`~icu_tasks.answer_metrics`), task
installation (:mod:`~icu_tasks.install`, :mod:`~icu_tasks.cli_tasks`, :mod:`~icu_tasks.paths`); and what every
part shares: user-facing errors (:mod:`~icu_tasks.errors`) and provenance (:mod:`~icu_tasks.provenance`).

Rules: this package never imports :mod:`icu_unlearn`; data generation needs no torch; the hooks know
nothing of models. See ``docs/architecture.md``.
"""
