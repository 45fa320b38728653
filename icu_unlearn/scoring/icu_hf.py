"""``icu_hf``: the lmms-eval model for any local HF image-text-to-text model plus an ICU-Bench stage.

::

    lmms-eval --include_path task_yamls --tasks icu_forget_vqa --model icu_hf \\
        --model_args pretrained=runs/vanilla,adapter=runs/demo/stage_2,batch_size=8

Registered through the ``lmms_eval.models`` entry point group (``icu_hf = icu_unlearn.scoring.icu_hf:MANIFEST`` in
pyproject), so it works after ``pip install`` with no environment variable. The stage's PEFT adapter is applied
*without merging* and its masks through forward hooks (:mod:`icu_unlearn.models.loading`); prompts go through
the processor's chat template (:mod:`icu_unlearn.models.encoding`); generation is batched with left padding, one
``generate`` call per batch (:mod:`icu_unlearn.models.inference`).

model_args: ``pretrained`` (model dir, required), ``adapter`` (stage dir), ``batch_size`` (default 8),
``device`` (``cpu|cuda|cuda:N|auto``), ``dtype`` (``float32|bfloat16|float16|auto``), ``max_new_tokens``
(overrides the task's value when given), ``allow_data_mismatch`` (``true`` scores a data dir other than the one
the model / stage was made with), ``quantize`` (``int8|int4|nf4``: the stage adapter merged and the language
model weight-quantized, :mod:`icu_unlearn.models.quantize`; the instance then scores that one stage). A value
in ``--model_args`` wins over lmms-eval's own ``--batch_size`` / ``--device`` flags. Any other name is an
error.

Before anything is loaded (:func:`icu_unlearn.scoring.preflight.check_scoring_inputs`): the model dir must exist (a
missing local path never falls back to the hub), the stage must have been trained on this base model (by
content: a copied vanilla model and run dir still match), and the data dir in ``$ICU_DATA_DIR`` must have the
data hash the model and stage were made with.
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from typing import Any

_CLASS_PATH = "icu_unlearn.scoring.icu_hf.IcuHF"


def __getattr__(name: str):
    """``MANIFEST`` while this module is still importing.

    Importing ``lmms_eval.models`` loads every ``lmms_eval.models`` entry point, including this module's
    ``MANIFEST``. When this module is what triggers that import (``import icu_unlearn.scoring.icu_hf`` before
    lmms-eval's registry exists), the entry point meets a half-initialised module; this hook answers it, so
    ``icu_hf`` is registered whatever the import order.
    """
    if name == "MANIFEST":
        from lmms_eval.models.registry_v2 import ModelManifest

        return ModelManifest(model_id="icu_hf", simple_class_path=_CLASS_PATH)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


from lmms_eval.api.model import lmms  # noqa: E402
from lmms_eval.models.registry_v2 import ModelManifest  # noqa: E402

from icu_tasks.errors import ConfigError, IcuError, did_you_mean  # noqa: E402

#: The names ``--model_args`` accepts (``max_batch_size`` is lmms-eval's own flag; accepted and ignored).
MODEL_ARGS: tuple[str, ...] = (
    "pretrained",
    "adapter",
    "batch_size",
    "device",
    "dtype",
    "max_new_tokens",
    "allow_data_mismatch",
    "quantize",
)
_IGNORED_ARGS = ("max_batch_size",)
DEFAULT_MAX_NEW_TOKENS = 32


def _under_lmms_eval_cli() -> bool:
    """Whether this process is the ``lmms-eval`` command line (which swallows exceptions and exits 0)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return "lmms_eval.__main__" in sys.modules or getattr(spec, "name", "") == "lmms_eval.__main__"


def _check_tasks_installed() -> None:
    """Under the lmms-eval CLI, stop a run of an ICU task that lmms-eval cannot find, with one clear line.

    lmms-eval checks task names before it builds the model and answers an unknown one with a traceback and
    exit status 0; this module is imported earlier (with the ``lmms_eval.models`` entry points), so it can
    say what to do instead (:func:`icu_tasks.harness.install.missing_task_message`) and exit 1.
    """
    if not _under_lmms_eval_cli():
        return
    from icu_tasks.harness.install import missing_task_message

    message = missing_task_message(sys.argv[1:])
    if message:
        raise SystemExit(f"error: {message}")


_check_tasks_installed()


def _bool(name: str, value: Any) -> bool:
    """A model_arg flag: ``true``/``false`` (lmms-eval already turns those into bools), ``1``/``0``."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise ConfigError(f"icu_hf: {name} must be true or false, got {value!r}")


def _positive_int(name: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1 or (isinstance(value, float) and value != number):
        raise ConfigError(f"icu_hf: {name} must be a positive integer, got {value!r}")
    return number


class IcuHF(lmms):
    """lmms-eval model: base model + optional ICU-Bench stage (adapter not merged, masks as hooks)."""

    is_simple = True

    def __init__(self, pretrained: str | None = None, **kwargs: Any) -> None:
        super().__init__()
        unknown = sorted(set(kwargs) - set(MODEL_ARGS) - set(_IGNORED_ARGS))
        if unknown:
            hint = did_you_mean(unknown[0], MODEL_ARGS)
            raise ConfigError(
                f"icu_hf: unknown model_arg '{unknown[0]}'{hint} (accepted: {', '.join(MODEL_ARGS)})"
            )
        if not pretrained:
            raise ConfigError("icu_hf: model_args must include pretrained=<model dir>")
        from icu_unlearn.models.loading import load_base, resolve_device
        from icu_unlearn.scoring.preflight import check_scoring_inputs

        self.batch_size_per_gpu = _positive_int("batch_size", kwargs.get("batch_size", 8))
        max_new = kwargs.get("max_new_tokens")
        self.max_new_tokens = None if max_new is None else _positive_int("max_new_tokens", max_new)
        allow = _bool("allow_data_mismatch", kwargs.get("allow_data_mismatch", False))
        quantize = kwargs.get("quantize")
        if quantize:  # torchao is imported only when asked for; a bad scheme fails before any load
            from icu_unlearn.models.quantize import check_scheme, merge_and_quantize

            quantize = check_scheme(quantize)
        # Before anything is loaded: model dir, stage (by content), data identity. No hub call, no wait.
        pretrained = str(check_scoring_inputs(pretrained, kwargs.get("adapter"), allow_data_mismatch=allow))
        self.pretrained = str(pretrained)
        self.chat_template = None  # lmms-eval reads this; prompts use the processor's own template
        self._device_name = resolve_device(kwargs.get("device"))
        if self._device_name == "cuda" and "LOCAL_RANK" in os.environ:  # one GPU per process (accelerate)
            self._device_name = f"cuda:{int(os.environ['LOCAL_RANK'])}"
        self._model, self.processor = load_base(pretrained, self._device_name, kwargs.get("dtype", "auto"))
        self._base = self._model
        self.adapter: str | None = None
        if kwargs.get("adapter"):
            self.load_adapter(kwargs["adapter"])
        if quantize:
            self._model = self._base = merge_and_quantize(self._model, quantize, self.adapter)

    # -------------------------------------------------------------------------------- construction

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> IcuHF:
        """Build from ``--model_args``; values there win over lmms-eval's ``--batch_size``/``--device``.

        Under the ``lmms-eval`` command line a user error (missing dir, mismatched adapter, unknown
        model_arg) ends the process with one ``error: ...`` line and exit status 1 — lmms-eval itself would
        print a traceback and exit 0.
        """
        from lmms_eval.utils import simple_parse_args_string

        args = simple_parse_args_string(arg_string or "")
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None and k not in args}
        try:
            return cls(**args, **extra)
        except IcuError as err:
            if _under_lmms_eval_cli():
                raise SystemExit(f"error: {err}") from None
            raise

    @classmethod
    def from_loaded(cls, model, processor, batch_size: int = 8, max_new_tokens: int | None = None) -> IcuHF:
        """Wrap an already loaded model (e.g. inside training code) without reloading anything."""
        self = cls.__new__(cls)
        lmms.__init__(self)
        self._model = self._base = model
        self.processor, self.pretrained, self.adapter, self.chat_template = processor, "", None, None
        self.batch_size_per_gpu = _positive_int("batch_size", batch_size)
        self.max_new_tokens = (
            None if max_new_tokens is None else _positive_int("max_new_tokens", max_new_tokens)
        )
        self._device_name = str(next(model.parameters()).device)
        return self

    def load_adapter(self, stage_dir: str | None) -> None:
        """Switch to another stage (or back to the base with ``None``) keeping the base model loaded."""
        from icu_unlearn.models.loading import load_stage, unload_stage

        if self.adapter is not None:
            self._base = unload_stage(self._model)
        self._model, self.adapter = self._base, None
        if stage_dir:
            self._model = load_stage(self._base, stage_dir, trainable=False)
            self.adapter = str(stage_dir)

    # -------------------------------------------------------------------------------- properties

    @property
    def model(self):
        return self._model

    @property
    def tokenizer(self):
        return getattr(self.processor, "tokenizer", self.processor)

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    @property
    def device(self):
        import torch

        return torch.device(self._device_name)

    def clean(self) -> None:
        """Keep the model loaded (lmms-eval's default deletes it), so one instance can score many stages."""
        import gc

        gc.collect()

    # -------------------------------------------------------------------------------- requests

    def _doc(self, request, doc_id, task, split, seen: dict) -> dict:
        """The request's doc, also stored as ``request.doc``: lmms-eval 0.7.3 hashes ``requests[0].doc`` into
        each sample's ``doc_hash`` but never sets it (every sample would hash ``null``). ``seen`` shares one
        dict between the requests of a doc (four per multiple-choice doc)."""
        key = (task, split, doc_id)
        if key not in seen:
            seen[key] = self.task_dict[task][split][doc_id]
        request.doc = seen[key]
        return request.doc

    def _doc_visuals(self, doc_to_visual, doc) -> list:
        if doc_to_visual is None:
            return []
        visuals = doc_to_visual(doc)
        if visuals is None:
            return []
        return [v for v in (visuals if isinstance(visuals, (list, tuple)) else [visuals]) if v is not None]

    def generate_until(self, requests) -> list[str]:
        """Greedy answers, batched per identical generation settings (``until``, ``max_new_tokens``)."""
        from tqdm.auto import tqdm

        from icu_unlearn.models.inference import generate_texts

        groups: dict[tuple, list[int]] = defaultdict(list)
        settings: dict[tuple, tuple[int, list[str]]] = {}
        for i, request in enumerate(requests):
            gen_kwargs = dict(request.args[1] or {})
            until = gen_kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = self.max_new_tokens or int(gen_kwargs.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS)
            key = (max_new, tuple(until))
            groups[key].append(i)
            settings[key] = (max_new, until)
        results: list[str] = [""] * len(requests)
        seen: dict = {}
        pbar = tqdm(total=len(requests), desc="icu_hf generate", disable=_no_bar(self.rank))
        for key, idx in groups.items():
            max_new, until = settings[key]
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start : start + self.batch_size]
                questions, images = [], []
                for i in chunk:
                    context, _, doc_to_visual, doc_id, task, split = requests[i].args[:6]
                    questions.append(context)
                    doc = self._doc(requests[i], doc_id, task, split, seen)
                    images.append(self._doc_visuals(doc_to_visual, doc))
                answers = generate_texts(
                    self.model, self.processor, questions, images, max_new, len(chunk), until=until
                )
                for i, answer in zip(chunk, answers, strict=True):
                    results[i] = answer
                    self.cache_hook.add_partial("generate_until", (requests[i].args[0], key), answer)
                pbar.update(len(chunk))
        pbar.close()
        return results

    def loglikelihood(self, requests) -> list[tuple]:
        """``(sum of continuation token log-probs, is_greedy)`` given image + context (see ``inference``).

        For a doc that carries ``icu_tasks.harness.likelihood.TOKEN_COUNT_KEY`` (the ``icu_ll`` / ``icu_mia`` tasks)
        the response is ``(sum, is_greedy, n_tokens)``, the scored token count those tasks normalise by.
        """
        from tqdm.auto import tqdm

        from icu_tasks.harness.likelihood import TOKEN_COUNT_KEY
        from icu_unlearn.models.inference import loglikelihoods

        contexts, continuations, images, counted = [], [], [], []
        seen: dict = {}
        for request in requests:
            args = request.args
            context, target = args[0], args[1]
            doc: dict = {}
            if len(args) >= 6:
                doc_to_visual, doc_id, task, split = args[2:6]
                doc = self._doc(request, doc_id, task, split, seen)
                target = target if isinstance(target, str) else target(doc)
                visuals = self._doc_visuals(doc_to_visual, doc)
            else:  # unconditional request ("", choice) used by acc_mutual_info
                visuals = []
            contexts.append(context)
            continuations.append(str(target))
            images.append(visuals)
            counted.append(bool(doc.get(TOKEN_COUNT_KEY)))
        results: list[tuple] = []
        pbar = tqdm(total=len(requests), desc="icu_hf loglikelihood", disable=_no_bar(self.rank))
        for start in range(0, len(requests), self.batch_size):
            end = start + self.batch_size
            results += loglikelihoods(
                self.model,
                self.processor,
                contexts[start:end],
                continuations[start:end],
                images[start:end],
                self.batch_size,
                token_counts=True,
            )
            pbar.update(len(contexts[start:end]))
        pbar.close()
        return [r if keep else r[:2] for r, keep in zip(results, counted, strict=True)]

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError("icu_hf does not implement multi-round generation")


#: Registered by the ``lmms_eval.models`` entry point in pyproject (``lmms-eval --model icu_hf``).
MANIFEST = ModelManifest(model_id="icu_hf", simple_class_path=_CLASS_PATH)


def _no_bar(rank: int) -> bool:
    """No progress bar on other ranks, nor under ``icu-bench --quiet`` (``TQDM_DISABLE``: an explicit
    ``disable=False`` would override it)."""
    return rank != 0 or os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes")
