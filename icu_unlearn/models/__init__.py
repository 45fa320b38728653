"""Models: the offline tiny LLaVA builder and base/stage loading (adapter without merging, plus masks).

Importing this package does not import torch or transformers; the functions do.
"""

from icu_unlearn.models.loading import check_adapter, load_base, load_stage, unload_stage
from icu_unlearn.models.masks import apply_masks, read_masks, remove_masks, save_masks
from icu_unlearn.models.tiny import TinyConfig, build_tiny_model, builtin_corpus, create_tiny_model

__all__ = [
    "TinyConfig",
    "apply_masks",
    "build_tiny_model",
    "builtin_corpus",
    "check_adapter",
    "create_tiny_model",
    "load_base",
    "load_stage",
    "read_masks",
    "remove_masks",
    "save_masks",
    "unload_stage",
]
