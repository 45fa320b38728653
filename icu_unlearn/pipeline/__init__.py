"""The pipeline: the in-process continual run with resume (:mod:`~icu_unlearn.pipeline.run`), run dirs
(:mod:`~icu_unlearn.pipeline.rundir`), cost accounting (:mod:`~icu_unlearn.pipeline.cost`) and the
calibration sweep (:mod:`~icu_unlearn.pipeline.sweep`).

May import: every other sub-package except :mod:`icu_unlearn.cli`.
"""
