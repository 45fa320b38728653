"""Continual results: matrices, metrics, report and figures, computed from result files only.

:mod:`~icu_tasks.continual.results` reads lmms-eval's output of every stage of a run dir into the matrices
A[k][j], R[k], U[k] (per view, item-level; :mod:`~icu_tasks.continual.samples` reads the sample files);
:mod:`~icu_tasks.continual.metrics` defines the forget-side metrics (normalised forgetting, FE, HFP, rebound,
collateral, over-forgetting) and the headline score, :mod:`~icu_tasks.continual.retention` the retain side (RU,
RU final, stability); :mod:`~icu_tasks.continual.bootstrap` their seeded intervals;
:mod:`~icu_tasks.continual.fluency` and :mod:`~icu_tasks.continual.longform` the long-form rows;
:mod:`~icu_tasks.continual.likelihood` the per-stage probability, truth ratio and MIA numbers.
:mod:`~icu_tasks.continual.summary` turns a run into its ``report.json`` entry,
:mod:`~icu_tasks.continual.markdown` renders ``report.md``, :mod:`~icu_tasks.continual.plots` draws the PNGs and
:mod:`~icu_tasks.continual.report` writes them all; :mod:`~icu_tasks.continual.cli` is ``icu-bench report``.
Nothing here loads a model.
"""
