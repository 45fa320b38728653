"""Continual metrics: pure maths over the scored items of a run (no file reading, no models).

:mod:`~icu_tasks.continual.items` holds the per-item tables with their profiles (the resampling units);
:mod:`~icu_tasks.continual.series` turns them into per-stage numbers, :mod:`~icu_tasks.continual.metrics` defines
the forget-side metrics and the headline score, :mod:`~icu_tasks.continual.retention` the retain side,
:mod:`~icu_tasks.continual.privacy` privacy and forget quality, :mod:`~icu_tasks.continual.fluency` the long-form
fluency; :mod:`~icu_tasks.continual.registry` is the one list of every number (name, direction, definition,
function) and :mod:`~icu_tasks.continual.bootstrap` their paired profile-level intervals. docs/metrics.md has
every formula.

May import: :mod:`icu_tasks.data.schema`, numpy and scipy.
"""
