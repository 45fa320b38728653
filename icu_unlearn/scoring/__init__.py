"""Scoring: the ``icu_hf`` lmms-eval model (:mod:`~icu_unlearn.scoring.icu_hf`), scoring stages through
lmms-eval's Python API (:mod:`~icu_unlearn.scoring.evaluate`) and the checks that run before any work
(:mod:`~icu_unlearn.scoring.preflight`).

May import: :mod:`icu_unlearn.models`, :mod:`icu_unlearn.methods`, :mod:`icu_unlearn.training`, :mod:`icu_tasks`.
"""
