"""The benchmark data: the data contract, its generation and its loading — no torch, no models.

:mod:`~icu_tasks.data.schema` is the contract (splits, views, columns, file names, counts);
:mod:`~icu_tasks.data.profiles`, :mod:`~icu_tasks.data.portrait`, :mod:`~icu_tasks.data.render`,
:mod:`~icu_tasks.data.questions`, :mod:`~icu_tasks.data.longform` and :mod:`~icu_tasks.data.utility` build the
parts; :mod:`~icu_tasks.data.plan` checks a scale and plans the splits, and :mod:`~icu_tasks.data.generate`
assembles the parts into a data dir atomically; :mod:`~icu_tasks.data.dataset` loads and
validates one (``IcuData``, ``read_rgb``) with the checks of :mod:`~icu_tasks.data.checks`;
:mod:`~icu_tasks.data.cli` is ``icu-bench data``.
"""
