"""Run records: the run-dir layout and atomic writers (:mod:`~icu_tasks.records.layout`), provenance — data
hashes, package versions, evaluation data identity (:mod:`~icu_tasks.records.provenance`) — and the
evaluation schedule (:mod:`~icu_tasks.records.schedule`).

May import: :mod:`icu_tasks.errors` only. Everything else in both packages may import this.
"""
