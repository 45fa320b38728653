"""ICU-Bench tasks: the data, the lmms-eval task hooks and the continual metrics — everything but models.

What lives here: the data contract (:mod:`~icu_tasks.schema`); data generation (:mod:`~icu_tasks.profiles`,
:mod:`~icu_tasks.questions`, :mod:`~icu_tasks.render`, :mod:`~icu_tasks.generate`) and loading
(:mod:`~icu_tasks.dataset`); the lmms-eval ``!function`` hooks (:mod:`~icu_tasks.hooks`,
:mod:`~icu_tasks.prompts`, :mod:`~icu_tasks.metrics`) and their installation (:mod:`~icu_tasks.install`,
:mod:`~icu_tasks.paths`); the continual metrics and report, which read result files only
(:mod:`~icu_tasks.continual`, :mod:`~icu_tasks.icu_metrics`, :mod:`~icu_tasks.report`,
:mod:`~icu_tasks.plots`); and the shared errors and provenance checks (:mod:`~icu_tasks.errors`,
:mod:`~icu_tasks.provenance`).

Rules: this package never imports :mod:`icu_unlearn`; data generation needs no torch; the hooks know
nothing of models. See ``docs/architecture.md``.
"""
