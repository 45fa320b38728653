"""The benchmark data: the data contract, its generation and its loading — no torch, no models.

:mod:`~icu_tasks.data.schema` is the contract (splits, views, columns, file names, counts);
:mod:`~icu_tasks.data.profiles`, :mod:`~icu_tasks.data.portrait`, :mod:`~icu_tasks.data.render`,
:mod:`~icu_tasks.data.questions` and :mod:`~icu_tasks.data.utility` build the parts, which
:mod:`~icu_tasks.data.generate` assembles into a data dir atomically; :mod:`~icu_tasks.data.dataset` loads and
validates one (``IcuData``, ``read_rgb``) with the checks of :mod:`~icu_tasks.data.checks`;
:mod:`~icu_tasks.data.cli` is ``icu-bench data``.
"""
