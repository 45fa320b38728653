"""Batched greedy generation and continuation log-likelihoods over :func:`icu_unlearn.models.encoding.encode`.

Both the lmms-eval model class (``icu_hf``) and quick checks in training code call these, so a score computed
in training is the score lmms-eval reports. Works with a plain HF model or a ``PeftModel`` (with mask hooks).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from icu_tasks.errors import ConfigError
from icu_unlearn.models.encoding import IGNORE_INDEX, as_image_list, encode


def _check(n: int, **lists: Sequence | None) -> None:
    for name, values in lists.items():
        if values is not None and len(values) != n:
            raise ConfigError(f"expected {n} {name}, got {len(values)}")


def _batches(order: list[int], batch_size: int) -> list[list[int]]:
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _by_length(questions: Sequence[str], images: Sequence[Any]) -> list[int]:
    """Indices sorted longest first (fewer pad tokens per batch); the caller restores the input order."""
    return sorted(
        range(len(questions)), key=lambda i: (-len(as_image_list(images[i])), -len(questions[i]), i)
    )


def to_model(batch, model) -> dict:
    """Move a processor batch to the model's device; floating tensors (pixels) take the model's dtype."""
    import torch

    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device=device, dtype=dtype) if value.is_floating_point() else value.to(device)
        out[key] = value
    return out


def _greedy_config(model, processor, max_new_tokens: int):
    from transformers import GenerationConfig

    tok = getattr(processor, "tokenizer", processor)
    base = getattr(model, "generation_config", None)
    config = copy.deepcopy(base) if base is not None else GenerationConfig()
    config.do_sample, config.num_beams, config.max_new_tokens = False, 1, int(max_new_tokens)
    config.temperature = config.top_p = config.top_k = None
    if config.eos_token_id is None:
        config.eos_token_id = tok.eos_token_id
    if config.pad_token_id is None:
        config.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return config


def cut_at_stops(text: str, until: Sequence[str] | None) -> str:
    """The text up to the first occurrence of any stop string (lmms-eval's ``until``)."""
    for stop in until or ():
        if stop:
            text = text.split(stop, 1)[0]
    return text


def generate_texts(
    model,
    processor,
    questions: Sequence[str],
    images: Sequence[Any] | None = None,
    max_new_tokens: int = 32,
    batch_size: int = 8,
    *,
    until: Sequence[str] | None = None,
    progress: bool = False,
) -> list[str]:
    """Greedy answers, one ``generate`` call per batch of ``batch_size`` left-padded prompts.

    Args:
        questions: user texts; images: per sample ``None``/image/list (``None`` → text only for all).
        until: stop strings; the answer is cut before the first one (EOS always stops generation).

    Returns:
        The decoded new tokens of each sample (special tokens skipped, whitespace stripped), in input order.
    """
    import torch
    from tqdm.auto import tqdm

    n = len(questions)
    images = list(images) if images is not None else [None] * n
    _check(n, images=images)
    if int(max_new_tokens) < 1:
        raise ConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    tok = getattr(processor, "tokenizer", processor)
    config = _greedy_config(model, processor, max_new_tokens)
    results: list[str] = [""] * n
    batches = _batches(_by_length(questions, images), int(batch_size))
    for idx in tqdm(batches, desc="generate", disable=not progress):
        batch = encode(processor, [questions[i] for i in idx], [images[i] for i in idx], padding_side="left")
        inputs = to_model(batch, model)
        with torch.inference_mode():
            out = model.generate(**inputs, generation_config=config)
        new = out[:, inputs["input_ids"].shape[1] :]
        for i, text in zip(idx, tok.batch_decode(new, skip_special_tokens=True), strict=True):
            results[i] = cut_at_stops(text, until).strip()
    return results


def loglikelihoods(
    model,
    processor,
    contexts: Sequence[str],
    continuations: Sequence[str],
    images: Sequence[Any] | None = None,
    batch_size: int = 8,
    *,
    progress: bool = False,
    token_counts: bool = False,
) -> list[tuple]:
    """Log-likelihood of each continuation as the assistant answer to its context (+ image).

    The continuation is placed in the assistant turn exactly as a training answer is (surrounding whitespace,
    e.g. lmms-eval's ``target_delimiter``, is stripped), so the scored tokens are the training labels: the
    answer plus the template's end-of-turn token. Returns ``(sum of token log-probs, is_greedy)`` per sample,
    where ``is_greedy`` means every scored token is the argmax. With ``token_counts=True`` each result is
    ``(sum, is_greedy, n_tokens)``: ``n_tokens`` is the number of scored tokens (the answer as the model's
    tokenizer splits it plus the end-of-turn token(s)), the length that TOFU-style probabilities normalise by.
    """
    import torch
    from tqdm.auto import tqdm

    n = len(contexts)
    images = list(images) if images is not None else [None] * n
    _check(n, continuations=continuations, images=images)
    results: list[tuple] = [(0.0, False)] * n
    batches = _batches(_by_length(contexts, images), int(batch_size))
    for idx in tqdm(batches, desc="loglikelihood", disable=not progress):
        batch = encode(
            processor,
            [contexts[i] for i in idx],
            [images[i] for i in idx],
            [continuations[i].strip() for i in idx],
            padding_side="right",
        )
        labels = batch.pop("labels")
        inputs = to_model(batch, model)
        with torch.inference_mode():
            logits = model(**inputs).logits
        target = labels[:, 1:].to(logits.device)
        scored = target != IGNORE_INDEX
        picked = logits[:, :-1][scored].float().log_softmax(-1)  # [tokens, vocab] at the scored positions
        tokens = target[scored]
        token_lp = picked.gather(-1, tokens[:, None]).squeeze(-1)
        greedy = picked.argmax(-1) == tokens
        row = scored.nonzero()[:, 0]
        sums = torch.zeros(len(idx), dtype=torch.float64).index_add_(0, row.cpu(), token_lp.double().cpu())
        misses = torch.zeros(len(idx), dtype=torch.long).index_add_(0, row.cpu(), (~greedy).long().cpu())
        counts = scored.sum(-1).cpu()
        for j, i in enumerate(idx):
            results[i] = (float(sums[j]), bool(misses[j] == 0))
            if token_counts:
                results[i] += (int(counts[j]),)
    return results
