"""The one place where a question (+ image, + answer) becomes model inputs.

Training (the collator), generation and log-likelihood scoring all call :func:`encode`, so what is trained is
exactly what is scored. The conversation goes through the processor's chat template: the user turn holds the
image(s) then the question text, the assistant turn holds the answer. It is generic over
``apply_chat_template``: the tiny LLaVA, LLaVA-1.5-HF and Qwen2-VL processors all work.

Answer span. The assistant turn is rendered by the template; the scored/trained span is the answer text plus
the template's first end-of-turn special token after it (``</s>``, ``<|im_end|>``…); anything the template
writes after that (a newline) is dropped. A template whose assistant turn has no special token at all (e.g.
LLaVA-1.5-HF's ``ASSISTANT: {answer} ``) gets its trailing whitespace replaced by the tokenizer's EOS
(``ASSISTANT: {answer}</s>``, LLaVA's training format), so a trained model learns to stop. Labels are ``-100``
everywhere else (prompt, image tokens, padding).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from icu_tasks.errors import ConfigError

#: Used only for processors without any chat template (LLaVA-1.5's conversation format).
FALLBACK_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: "
    "{% for part in message['content'] if part['type'] == 'image' %}<image>{{ '\\n' }}{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'text' %}{{ part['text'] }}{% endfor %} "
    "{% elif message['role'] == 'assistant' %}ASSISTANT: "
    "{% for part in message['content'] if part['type'] == 'text' %}{{ part['text'] }}{% endfor %}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

#: The label of a position no loss is taken on (prompt, image tokens, padding); the one definition, used by
#: :func:`encode` and :mod:`icu_unlearn.methods.losses` (PyTorch's ``cross_entropy`` default).
IGNORE_INDEX = -100
#: Per processor/tokenizer memo of rendered samples and token ids: rendering a chat template and tokenizing
#: are pure functions of the text, and the training loop renders the same rows every epoch. Bounded in size.
_MEMO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_MEMO_MAX = 200_000


def _memo(owner: Any) -> dict:
    try:
        table = _MEMO.setdefault(owner, {})
    except TypeError:  # an owner that cannot be weakly referenced: no memo
        return {}
    if len(table) > _MEMO_MAX:
        table.clear()
    return table


def as_image_list(image: Any) -> list:
    """``None`` → ``[]``, one image → ``[image]``, a list/tuple of images → a list (``None`` entries dropped)."""
    if image is None:
        return []
    if isinstance(image, (list, tuple)):
        return [im for im in image if im is not None]
    return [image]


def build_messages(question: str, image: Any = None, answer: str | None = None) -> list[dict]:
    """The chat messages for one sample: user = image(s) + text; assistant = the answer (if given)."""
    content = [{"type": "image"} for _ in as_image_list(image)]
    content.append({"type": "text", "text": question})
    messages = [{"role": "user", "content": content}]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


def _tokenizer(processor):
    return getattr(processor, "tokenizer", processor)


def _render(processor, messages: list[dict], add_generation_prompt: bool) -> str:
    template = getattr(processor, "chat_template", None) or getattr(
        _tokenizer(processor), "chat_template", None
    )
    if template is None:
        template = FALLBACK_TEMPLATE.replace("<image>", getattr(processor, "image_token", "<image>"))
    return processor.apply_chat_template(
        messages, chat_template=template, add_generation_prompt=add_generation_prompt, tokenize=False
    )


def _end_tokens(tokenizer) -> list[str]:
    """Special tokens that can close an assistant turn (all specials except padding and media placeholders)."""
    media = {getattr(tokenizer, a, None) for a in ("image_token", "video_token", "audio_token", "pad_token")}
    return [t for t in tokenizer.all_special_tokens if t and t not in media]


@dataclass(frozen=True)
class RenderedSample:
    """One sample as text: ``prompt`` ends with the generation prompt; ``full`` = prompt + answer span."""

    prompt: str
    full: str | None


def render_sample(processor, question: str, image: Any = None, answer: str | None = None) -> RenderedSample:
    """Render one sample through the chat template (see the module docstring for the answer span)."""
    key = ("render", question, len(as_image_list(image)), answer)
    memo = _memo(processor)
    if key not in memo:
        memo[key] = _render_sample(processor, question, image, answer)
    return memo[key]


def _render_sample(processor, question: str, image: Any, answer: str | None) -> RenderedSample:
    prompt = _render(processor, build_messages(question, image), add_generation_prompt=True)
    if answer is None:
        return RenderedSample(prompt, None)
    full = _render(processor, build_messages(question, image, answer), add_generation_prompt=False)
    if not full.startswith(prompt):
        raise ConfigError(
            "the chat template's assistant turn does not extend its generation prompt; cannot locate the answer"
        )
    suffix = full[len(prompt) :]
    tok = _tokenizer(processor)
    hits = [(suffix.find(t), t) for t in _end_tokens(tok)]
    hits = [(i, t) for i, t in hits if i >= 0]
    if hits:
        i, t = min(hits)
        suffix = suffix[: i + len(t)]
    elif tok.eos_token:
        suffix = suffix.rstrip() + tok.eos_token
    return RenderedSample(prompt, prompt + suffix)


def _token_ids(tok, text: str) -> list[int]:
    memo = _memo(tok)
    key = ("ids", text)
    if key not in memo:
        memo[key] = tuple(tok(text, add_special_tokens=False)["input_ids"])
    return list(memo[key])


def encode(
    processor,
    questions: Sequence[str],
    images: Sequence[Any] | None = None,
    answers: Sequence[str] | None = None,
    *,
    padding_side: str | None = None,
    return_tensors: str = "pt",
):
    """Turn a batch of samples into model inputs (``input_ids``, ``attention_mask``, pixel values…).

    Args:
        processor: an HF multimodal processor (or a tokenizer for text-only models).
        questions: the user text of each sample (``icu_tasks.harness.prompts.question_text(row)``).
        images: per sample ``None``, one PIL image or a list of images; ``None`` → no images at all.
        answers: per sample the assistant answer. Given → the full conversation with ``labels`` (answer span
            only, ``-100`` elsewhere), for training and log-likelihood; omitted → prompts that end with the
            generation prompt, for generation.
        padding_side: ``"left"`` (default without answers: batched generation) or ``"right"`` (default with
            answers; real tokens keep positions 0..n-1 without explicit ``position_ids``).

    Returns:
        A ``BatchFeature`` from the processor, plus ``labels`` when ``answers`` are given.
    """
    n = len(questions)
    images = list(images) if images is not None else [None] * n
    if len(images) != n or (answers is not None and len(answers) != n):
        raise ConfigError(f"encode: got {n} questions, {len(images)} images, {len(answers or [])} answers")
    side = padding_side or ("left" if answers is None else "right")
    if side not in ("left", "right"):
        raise ConfigError(f"padding_side must be 'left' or 'right', got {side!r}")
    tok = _tokenizer(processor)
    rendered = [
        render_sample(processor, q, im, None if answers is None else answers[i])
        for i, (q, im) in enumerate(zip(questions, images, strict=True))
    ]
    texts = [r.prompt if answers is None else r.full for r in rendered]
    flat_images = [im for sample in images for im in as_image_list(sample)]
    bos = getattr(tok, "bos_token", None)
    add_special = not (bos and all(t.startswith(bos) for t in texts))
    kwargs: dict[str, Any] = {"text": texts, "padding": True, "return_tensors": return_tensors}
    if flat_images:
        kwargs["images"] = flat_images
    old_side = tok.padding_side
    tok.padding_side = side
    try:
        batch = processor(**kwargs, add_special_tokens=add_special)
    finally:
        tok.padding_side = old_side
    if answers is not None:
        batch["labels"] = _answer_labels(tok, batch, rendered, side, add_special)
    return batch


def _answer_labels(tok, batch, rendered: list[RenderedSample], side: str, add_special: bool):
    """Labels = input ids on each sample's answer span, ``-100`` elsewhere."""
    import torch

    ids, mask = batch["input_ids"], batch["attention_mask"]
    labels = torch.full_like(ids, IGNORE_INDEX)
    n_after = _appended_specials(tok) if add_special else 0
    for i, r in enumerate(rendered):
        prompt_ids, full_ids = _token_ids(tok, r.prompt), _token_ids(tok, r.full)
        n_answer = len(full_ids) - len(prompt_ids)
        if n_answer < 1 or full_ids[: len(prompt_ids)] != prompt_ids:
            raise ConfigError(
                "the answer's tokens do not extend the prompt's tokens (tokenizer merges across them)"
            )
        length = int(mask[i].sum())
        end = length - n_after if side == "right" else ids.shape[1] - n_after
        start = end - n_answer
        labels[i, start:end] = ids[i, start:end]
        expected = torch.tensor(full_ids[len(prompt_ids) :], dtype=ids.dtype)
        if not torch.equal(ids[i, start:end], expected):
            raise ConfigError(
                "the processor's tokens for the answer differ from the tokenizer's; cannot label it"
            )
    return labels


def _appended_specials(tok) -> int:
    """How many special tokens the tokenizer appends after the text when ``add_special_tokens=True``."""
    plain = tok("a", add_special_tokens=False)["input_ids"]
    full = tok("a", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return len(full) - start - len(plain)
    return 0
