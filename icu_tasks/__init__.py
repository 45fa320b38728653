"""ICU-Bench tasks: the data, the lmms-eval task hooks, the continual metrics and the report — everything but models.

Sub-packages, along the data flow (each may import only those listed before it, plus :mod:`icu_tasks.errors`
and :mod:`icu_tasks.paths`):

- :mod:`icu_tasks.records` — the run-dir layout, provenance (data hashes, package versions) and the evaluation
  schedule: what every other part writes and reads.
- :mod:`icu_tasks.data` — the data contract, the generator and the loader (no torch).
- :mod:`icu_tasks.continual` — pure metric maths over matrices (forgetting, retention, fluency, bootstrap).
- :mod:`icu_tasks.harness` — what the lmms-eval task YAMLs call: doc builders, per-sample metrics, prompts and
  task installation.
- :mod:`icu_tasks.report` — reading a run's result files into matrices, ``report.json``/``report.md``, plots
  and ``icu-bench report``.

Rules: this package never imports :mod:`icu_unlearn`; data generation needs no torch; the hooks know nothing
of models. See ``docs/architecture.md``.
"""
