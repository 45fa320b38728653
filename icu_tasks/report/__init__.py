"""The report: a run dir's lmms-eval result and sample files in, ``report.json``, ``report.md`` and figures out.

:mod:`~icu_tasks.report.results` reads every stage into the matrices A[k][j], R[k], U[k]
(:mod:`~icu_tasks.report.samples` reads the sample files); :mod:`~icu_tasks.report.likelihood` the per-stage
probability, truth ratio and MIA numbers; :mod:`~icu_tasks.report.summary` turns a run into its ``report.json``
entry, :mod:`~icu_tasks.report.markdown` renders ``report.md``, :mod:`~icu_tasks.report.plots` draws the PNGs,
:mod:`~icu_tasks.report.write` writes them all; :mod:`~icu_tasks.report.cli` is ``icu-bench report``.

May import: every other part of :mod:`icu_tasks`. Nothing here loads a model.
"""
