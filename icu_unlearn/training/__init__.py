"""Training: the one training loop (:mod:`~icu_unlearn.training.loop`), training rows and collation
(:mod:`~icu_unlearn.training.data`, :mod:`~icu_unlearn.training.row_encodings`), the vanilla fine-tune
(:mod:`~icu_unlearn.training.finetune`, its stopping rule in :mod:`~icu_unlearn.training.knowledge`), one
unlearning stage (:mod:`~icu_unlearn.training.unlearn`) and the stage dir it writes
(:mod:`~icu_unlearn.training.stage_dir`); progress display and process ranks.

May import: :mod:`icu_unlearn.models`, :mod:`icu_unlearn.methods`, :mod:`icu_tasks`.
"""
