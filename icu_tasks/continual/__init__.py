"""Continual results: matrices, metrics, report and figures, computed from result files only.

:mod:`~icu_tasks.continual.results` reads lmms-eval's output of every stage of a run dir into the matrices
A[k][j], R[k], U[k] (per view, item-level); :mod:`~icu_tasks.continual.metrics` defines the continual metrics
(normalised forgetting, FE, HFP, rebound, collateral, RU, the headline score);
:mod:`~icu_tasks.continual.bootstrap` their seeded intervals; :mod:`~icu_tasks.continual.fluency` the
generation fluency; :mod:`~icu_tasks.continual.report` and :mod:`~icu_tasks.continual.plots` write
``report.md``/``report.json`` and the PNGs; :mod:`~icu_tasks.continual.cli` is ``icu-bench report``. Nothing here
loads a model.
"""
