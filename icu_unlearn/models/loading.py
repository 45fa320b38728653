"""Load a base model, apply a stage's PEFT adapter (never merged) and its inference-time output masks.

A stage dir (``RUN/stage_K/``) holds ``adapter_config.json`` + ``adapter_model.safetensors`` (a PEFT adapter,
cumulative over stages) and optionally ``masks.safetensors``: module name as in the *base* model's
``named_modules()`` → float 0/1 tensor of shape ``[out_features]``. A mask multiplies that module's output
through a forward hook; on a LoRA-wrapped module the hook sits on the wrapper, so the base output and the LoRA
delta are both masked. A dir with masks but no adapter (a training-free method's first stage) is accepted.

Mismatches are refused before PEFT touches the model: an adapter recorded for another base model, LoRA shapes
that do not fit, modules the base does not have, ``.bin`` weights instead of safetensors.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

from icu_tasks.errors import ConfigError, StageError
from icu_tasks.harness.torchvision_check import check_torchvision
from icu_tasks.records.layout import MASKS_FILE
from icu_unlearn.models.masks import apply_masks, base_of, read_masks, remove_masks
from icu_unlearn.models.precision import resolve_dtype

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_BIN = "adapter_model.bin"
_PEFT_PREFIX = "base_model.model."
_MAX_HEADER = 100_000_000  # safetensors' own limit on the header size


_DEVICE_NAME = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device_name(device: str | None) -> str:
    """The spelling of a device, checked without torch: ``auto`` (also for None/""), ``cpu``, ``cuda``,
    ``cuda:N`` or ``mps``; anything else is a one-line :class:`ConfigError`."""
    if device in (None, ""):
        return "auto"
    if not _DEVICE_NAME.match(str(device)):
        raise ConfigError(f"unknown device {device!r} (expected auto, cpu, cuda, cuda:N or mps)")
    return str(device)


def resolve_device(device: str | None) -> str:
    """``None``/``"auto"`` → ``cuda`` when available else ``cpu``; a CUDA device without CUDA is an error."""
    device = check_device_name(device)
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available (use --device cpu or auto)")
    return device


def resolve_model_dir(pretrained: str | os.PathLike) -> Path:
    """The local dir of a model: a dir with ``config.json``, or a hub id already in the HF cache.

    Never touches the network: anything else (a typo, a hub id not downloaded yet) is an immediate
    :class:`ConfigError`, instead of minutes of hub retries before the same message.
    """
    name = str(pretrained)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"not a model dir (no config.json): {path}")
        return check_model_files(path)
    if path.exists():
        raise ConfigError(f"model dir not found: {pretrained} is a file, not a directory")
    cached = _hub_cache_dir(name)
    if cached is None:
        raise ConfigError(
            f"model dir not found: {pretrained} (no such dir, and not a model id in the local HF cache; "
            "ICU-Bench never downloads: fetch hub models first with `hf download ID`)"
        )
    return check_model_files(cached)


#: Files one of which holds a transformers model's weights (a single file or a sharded index).
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def check_model_files(path: Path) -> Path:
    """``path`` if its ``config.json`` is a transformers config (a JSON object naming its ``model_type``) and
    a weights file is there (:data:`WEIGHT_FILES`); else a one-line :class:`ConfigError`. No torch import."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"not a model dir: {path / 'config.json'} is not readable JSON ({err})") from None
    if not isinstance(config, dict) or not config.get("model_type"):
        raise ConfigError(
            f"not a model dir: {path / 'config.json'} names no model_type (not a transformers model config)"
        )
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise ConfigError(f"not a model dir: {path} has no weights ({' or '.join(WEIGHT_FILES[::2])})")
    return path


def _hub_cache_dir(name: str) -> Path | None:
    """The cached snapshot dir of hub id ``name`` (``org/model``) if its config.json is cached, else None."""
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(name, "config.json")
    except Exception:  # an invalid repo id is simply not in the cache
        return None
    return Path(found).parent if isinstance(found, str) else None


def load_base(pretrained: str | os.PathLike, device: str | None = "cpu", dtype: Any = "auto"):
    """Load a local HF image-text-to-text model and its processor, in eval mode on ``device``.

    Returns ``(model, processor)``. ``trust_remote_code`` stays off and nothing is downloaded: ``pretrained``
    must be a model dir or a hub id in the local HF cache (:func:`resolve_model_dir`); anything else is a
    :class:`ConfigError` before transformers is asked.
    """
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    name = str(resolve_model_dir(pretrained))
    check_torchvision()
    from transformers import AutoModelForImageTextToText, AutoProcessor

    try:
        model = AutoModelForImageTextToText.from_pretrained(name, dtype=torch_dtype, local_files_only=True)
        try:
            processor = AutoProcessor.from_pretrained(name, local_files_only=True)
        except ImportError as err:
            if "torchvision" not in str(err).lower():
                raise
            processor = _processor_without_video(name)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"cannot load model {pretrained}: {first}") from err
    return model.to(device).eval(), processor


def _processor_without_video(name: str):
    """The model's processor without its video part, for machines without torchvision.

    Qwen2-VL's processor owns a video processor that only exists with torchvision (there is no PIL variant),
    and transformers refuses to build the processor without it, even for images and text. ICU-Bench never
    sends videos: load the image processor (its PIL variant) and the tokenizer, and build the processor
    class with ``video_processor=None``.
    """
    import inspect

    from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING

    path = Path(name)
    cls = PROCESSOR_MAPPING[type(AutoConfig.from_pretrained(name))]
    params = inspect.signature(cls.__init__).parameters
    if "video_processor" not in params:
        raise ImportError(f"the processor of {name} needs torchvision, which is not installed")

    def check_argument_for_proper_class(self, argument_name, argument):
        if argument is None and "video" in argument_name:
            return None
        return cls.check_argument_for_proper_class(self, argument_name, argument)

    no_video = type(
        f"{cls.__name__}WithoutVideo",
        (cls,),
        {"check_argument_for_proper_class": check_argument_for_proper_class},
    )
    extra: dict[str, Any] = {}
    for config_name in ("processor_config.json", "preprocessor_config.json"):
        if (path / config_name).is_file():
            saved = json.loads((path / config_name).read_text())
            extra |= {k: v for k, v in saved.items() if k in params and k not in ("self", "chat_template")}
    tokenizer = AutoTokenizer.from_pretrained(name)
    template = None
    if (path / "chat_template.jinja").is_file():
        template = (path / "chat_template.jinja").read_text()
    elif (path / "chat_template.json").is_file():
        template = json.loads((path / "chat_template.json").read_text()).get("chat_template")
    extra |= {
        "image_processor": AutoImageProcessor.from_pretrained(name),
        "tokenizer": tokenizer,
        "video_processor": None,
        "chat_template": template or tokenizer.chat_template,
    }
    return no_video(**extra)


# ----------------------------------------------------------------------------------------------- adapters


def same_base(recorded: str | None, actual: str) -> bool:
    """Whether a recorded base model (an adapter's ``base_model_name_or_path``, a ``stage.json``'s
    ``base_model``) names the model at ``actual``; nothing recorded matches anything.

    The one rule for comparing base-model paths. Paths are compared resolved. A recorded path that no longer
    exists (a run moved to another machine) is accepted when its last component matches; otherwise (hub ids)
    the two names must be equal.
    """
    if not recorded:
        return True
    rec, act = Path(recorded).expanduser(), Path(actual).expanduser()
    if rec.exists() and act.exists():
        return rec.resolve() == act.resolve()
    if not rec.exists() and act.exists():
        return rec.name == act.resolve().name
    return recorded == actual


def check_adapter_files(stage_dir: str | os.PathLike, base: str | os.PathLike | None = None) -> dict:
    """Validate a stage's adapter files without any model; returns its adapter config.

    The weights must be safetensors (``adapter_model.bin`` is refused), the config readable, and when ``base``
    is given the stage must have been trained on it: by content when its ``stage.json`` records the base's
    ``base_model_id`` (:mod:`icu_unlearn.models.identity`: a copied or moved model still matches), else — an old record
    or a foreign adapter — by the config's ``base_model_name_or_path`` (see :func:`same_base`). Cheap: callers
    run it before loading a base model, so a wrong stage dir fails at once.
    """
    from icu_unlearn.models.identity import stage_matches_base

    stage = Path(stage_dir)
    cfg_path, weights = stage / ADAPTER_CONFIG, stage / ADAPTER_WEIGHTS
    if not weights.is_file():
        if (stage / ADAPTER_BIN).is_file():
            raise StageError(f"{stage} has {ADAPTER_BIN} but no {ADAPTER_WEIGHTS} (only safetensors load)")
        raise StageError(f"{stage} has {ADAPTER_CONFIG} but no {ADAPTER_WEIGHTS}")
    try:
        config = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as err:
        raise StageError(f"unreadable {cfg_path}: {err}") from err
    if not isinstance(config, dict):
        raise StageError(f"{cfg_path} must hold a JSON object")
    safetensors_header(weights)
    recorded = config.get("base_model_name_or_path")
    if not base or stage_matches_base(stage, base):
        return config
    if not same_base(recorded, str(base)):
        raise StageError(f"adapter {stage} was trained on base model {recorded}, not on {base}")
    return config


def safetensors_header(path: str | os.PathLike) -> dict:
    """The JSON header of a safetensors file (tensor names → dtype, shape, offsets), read without torch.

    A file that is not safetensors (truncated, another format, garbage) is a :class:`StageError`.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            prefix = fh.read(8)
            size = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
            if not 2 <= size <= min(_MAX_HEADER, path.stat().st_size - 8):
                raise ValueError("bad header length")
            header = json.loads(fh.read(size))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (OSError, ValueError) as err:
        raise StageError(f"{path} is not a readable safetensors file ({err})") from err
    return header


def check_adapter(model, stage_dir: str | os.PathLike) -> dict:
    """Validate a stage's adapter against ``model`` without loading it; returns its adapter config."""
    from safetensors import safe_open

    stage = Path(stage_dir)
    base = base_of(model)
    actual = getattr(base, "name_or_path", "") or getattr(base.config, "_name_or_path", "")
    config = check_adapter_files(stage, actual)
    modules = dict(base.named_modules())
    with safe_open(str(stage / ADAPTER_WEIGHTS), framework="pt") as f:
        for key in f.keys():
            _check_key(key, f.get_slice(key).get_shape(), modules, stage)
    return config


def _check_key(key: str, shape: list[int], modules: dict, stage: Path) -> None:
    name = key.removeprefix(_PEFT_PREFIX)
    for part in (".shira_weight", ".shira_indices"):  # MMUnlearner's sparse adapter: the module must exist
        if name.endswith(part) and name[: -len(part)] not in modules:
            raise StageError(
                f"adapter {stage} targets {name[: -len(part)]!r}, which the base model does not have"
            )
    for part in (".lora_A.weight", ".lora_B.weight"):
        if name.endswith(part):
            module_name = name[: -len(part)]
            module = modules.get(module_name)
            if module is None:
                raise StageError(
                    f"adapter {stage} targets {module_name!r}, which the base model does not have"
                )
            in_f, out_f = getattr(module, "in_features", None), getattr(module, "out_features", None)
            fits = (shape[1] == in_f) if part == ".lora_A.weight" else (shape[0] == out_f)
            if in_f is not None and out_f is not None and not fits:
                raise StageError(
                    f"adapter {stage} does not fit the base model: {key} has shape {list(shape)} but "
                    f"{module_name!r} is {in_f}→{out_f}"
                )
            return


def load_stage(model, stage_dir: str | os.PathLike, trainable: bool = False):
    """Apply a stage dir to a base model: its PEFT adapter (not merged) and then its masks.

    Returns the ``PeftModel`` (or ``model`` itself for a masks-only stage). With ``trainable=True`` the
    adapter's weights require grad (an unlearning stage continues the previous stage's adapter). The base
    model is modified in place by PEFT; use :func:`unload_stage` to get it back clean.
    """
    from peft import PeftModel

    stage = Path(stage_dir)
    if not stage.is_dir():
        raise StageError(f"stage dir not found: {stage}")
    has_adapter = (stage / ADAPTER_CONFIG).is_file()
    masks = read_masks(stage)
    if not has_adapter and not masks:
        raise StageError(f"not a stage dir (no {ADAPTER_CONFIG} and no {MASKS_FILE}): {stage}")
    if has_adapter:
        check_adapter(model, stage)
        model = PeftModel.from_pretrained(model, str(stage), is_trainable=trainable)
    if not trainable:
        model.eval()
    if masks:
        apply_masks(model, masks)
    return model


def unload_stage(model):
    """Remove mask hooks and LoRA layers (without merging); returns the clean base model."""
    remove_masks(model)
    unload = getattr(model, "unload", None)
    return unload() if callable(unload) else model


@contextlib.contextmanager
def quiet_transformers():
    """Keep transformers' info/warning chatter off the progress screen during training."""
    from transformers.utils import logging as hf_logging

    old = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            # PEFT's SHiRA layer (MMUnlearner) builds a sparse tensor each forward; torch warns once about checks
            warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
            yield
    finally:
        hf_logging.set_verbosity(old)
