"""ICU-Bench unlearning: models, the unlearning methods, training, scoring and the continual pipeline.

Sub-packages, along the data flow (each may import only those listed before it, and :mod:`icu_tasks`):

- :mod:`icu_unlearn.models` — the tiny-model builder, base and stage loading (adapter without merging, plus
  masks), adapters, prompt encoding, batched generation, weight identity.
- :mod:`icu_unlearn.methods` — the method protocol (config, step context, losses), the registry and one module
  per method. A method knows nothing of the pipeline that runs it.
- :mod:`icu_unlearn.training` — the training loop, collation, the vanilla fine-tune (and its stopping rule),
  one unlearning stage and its stage dir.
- :mod:`icu_unlearn.scoring` — the ``icu_hf`` lmms-eval model, scoring through lmms-eval, pre-flight checks.
- :mod:`icu_unlearn.pipeline` — the in-process run (resume, cost), run dirs, the calibration sweep and the
  robustness probes (relearning attacks, quantization).
- :mod:`icu_unlearn.cli` — the ``icu-bench`` console script.

Depends on :mod:`icu_tasks` (data, records, prompts, errors), never the other way round. See
``docs/architecture.md``.
"""

import logging


class _NoKernelLoadWarnings(logging.Filter):
    """Drop torchao's "Failed to load <kernel library>" warnings: PEFT imports torchao whenever it is installed,
    and a CPU build of torch cannot load torchao's CUDA kernel libraries, none of which ICU-Bench uses."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to load ")


class _NoEnumConstantWarnings(logging.Filter):
    """Drop torch's "<enum ...> is an Enum subclass and is now natively supported by torch.compile" warnings,
    which torchao's import (through PEFT) triggers once per enum; nothing ICU-Bench runs compiles."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is an Enum subclass and is now natively supported" not in str(record.msg)


logging.getLogger("torchao").addFilter(_NoKernelLoadWarnings())
logging.getLogger("torch.utils._pytree").addFilter(_NoEnumConstantWarnings())
