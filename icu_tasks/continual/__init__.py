"""Continual metrics: pure maths over the matrices of a run (no file reading, no models).

:mod:`~icu_tasks.continual.metrics` defines the forget-side metrics (normalised forgetting, FE, HFP, rebound,
collateral, over-forgetting) and the headline score, :mod:`~icu_tasks.continual.retention` the retain side;
:mod:`~icu_tasks.continual.bootstrap` their seeded intervals; :mod:`~icu_tasks.continual.fluency` and
:mod:`~icu_tasks.continual.longform` the long-form rows.

May import: :mod:`icu_tasks.data.schema` and numpy.
"""
