"""ICU-Bench unlearning: models, fine-tuning, the unlearning methods and the continual pipeline.

What lives here: base models and stage loading (:mod:`~icu_unlearn.models`); prompts to model inputs
(:mod:`~icu_unlearn.encoding`, :mod:`~icu_unlearn.training_data`); losses (:mod:`~icu_unlearn.losses`); the
methods and their registry (:mod:`~icu_unlearn.methods`); the one training loop
(:mod:`~icu_unlearn.trainer`), the fine-tune (:mod:`~icu_unlearn.finetune`, with its stopping rule in
:mod:`~icu_unlearn.knowledge`) and unlearning stages (:mod:`~icu_unlearn.train`); stage and run dirs
(:mod:`~icu_unlearn.stage`, :mod:`~icu_unlearn.rundir`, :mod:`~icu_unlearn.identity`; the layout itself is
:mod:`icu_tasks.run_layout`); scoring through lmms-eval (the ``icu_hf`` model
in :mod:`~icu_unlearn.lmms_model`, :mod:`~icu_unlearn.scoring`); the in-process pipeline
(:mod:`~icu_unlearn.pipeline`); and the ``icu-bench`` CLI (:mod:`~icu_unlearn.cli` and the ``cli_*``
modules).

Depends on :mod:`icu_tasks` (data, prompts, errors), never the other way round. See
``docs/architecture.md``.
"""
