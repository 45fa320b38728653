"""Prompting + inference on the tiny model: answer-only labels, batching invariance, hand-checked scores."""

from __future__ import annotations

import copy

import pytest
import torch

from icu_tasks.data.dataset import open_data
from icu_tasks.errors import ConfigError
from icu_tasks.harness.prompts import question_text
from icu_unlearn.models.encoding import IGNORE_INDEX, encode, render_sample
from icu_unlearn.models.inference import generate_texts, loglikelihoods
from icu_unlearn.models.loading import load_base


@pytest.fixture(scope="module")
def base(tiny_model_dir):
    return load_base(tiny_model_dir, "cpu", "float32")


@pytest.fixture(scope="module")
def samples(small_data_dir):
    """12 rows alternating VQA (image) and QA (text), so batches mix both and their lengths differ."""
    data = open_data(small_data_dir)
    vqa, qa = data.rows(view="vqa")[:6], data.rows(view="qa")[:6]
    rows = [r for pair in zip(vqa, qa, strict=True) for r in pair]
    images = [data.load_image(r["image"]) if r["image"] else None for r in rows]
    return [question_text(r) for r in rows], images, [r["answer"] for r in rows], [r["choices"] for r in rows]


def test_render_is_the_documented_llava_format(base):
    _, processor = base
    r = render_sample(processor, "Q?", object(), "A b")
    assert r.prompt == "<s>USER: <image>\nQ?\nASSISTANT:"
    assert r.full == "<s>USER: <image>\nQ?\nASSISTANT: A b</s>"
    assert render_sample(processor, "Q?").prompt == "<s>USER: Q?\nASSISTANT:"


#: The chat template shipped with the llava-hf/llava-1.5-*-hf processors: no end token after the answer.
LLAVA15_HF_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}"
    "{% endif %}{# Render all images first #}{% for content in message['content'] | selectattr('type', "
    "'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != "
    "'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', "
    "'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def test_template_without_end_token_gets_eos(base):
    _, processor = base
    processor = copy.deepcopy(processor)
    processor.chat_template = LLAVA15_HF_TEMPLATE
    r = render_sample(processor, "Q?", object(), "A b")
    assert r.prompt == "USER: <image>\nQ? ASSISTANT:"
    assert r.full == "USER: <image>\nQ? ASSISTANT: A b</s>"
    batch = encode(processor, ["Q?"], [None], ["A b"])
    labelled = batch["labels"][0][batch["labels"][0] != IGNORE_INDEX].tolist()
    assert processor.tokenizer.decode(labelled) == " A b</s>"


def test_labels_cover_exactly_the_answer_and_eos(base, samples):
    _, processor = base
    questions, images, answers, _ = samples
    batch = encode(processor, questions[:4], images[:4], answers[:4])
    tok = processor.tokenizer
    for i in range(4):
        labelled = batch["labels"][i][batch["labels"][i] != IGNORE_INDEX].tolist()
        assert labelled[-1] == tok.eos_token_id
        assert tok.decode(labelled[:-1]).strip() == answers[i]
        # Every unlabelled real token is prompt (right padding: the answer is the last real span).
        real = int(batch["attention_mask"][i].sum())
        assert (batch["labels"][i][real:] == IGNORE_INDEX).all()
    # Image rows carry the 16 image tokens; text rows carry none.
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert [int((row == image_id).sum()) for row in batch["input_ids"]] == [16, 0, 16, 0]


def test_encode_rejects_mismatched_lengths(base):
    _, processor = base
    with pytest.raises(ConfigError, match="2 questions"):
        encode(processor, ["a", "b"], [None], None)


def test_batched_generation_equals_batch_size_one(base, samples):
    model, processor = base
    questions, images, _, _ = samples
    one = generate_texts(model, processor, questions, images, max_new_tokens=12, batch_size=1)
    eight = generate_texts(model, processor, questions, images, max_new_tokens=12, batch_size=8)
    assert one == eight
    assert len(set(one)) > 1  # a random model still answers differently for different inputs


def _hand_loglikelihood(model, processor, question, image, answer) -> tuple[float, bool]:
    """Unbatched, unpadded: the tokens after ``ASSISTANT:`` in ``<s>USER: <image>\\nQ\\nASSISTANT: A</s>``."""
    prefix = "<s>USER: " + ("<image>\n" if image is not None else "") + question + "\nASSISTANT:"
    kwargs = {"images": [image]} if image is not None else {}
    full = processor(
        text=[prefix + " " + answer + "</s>"], add_special_tokens=False, return_tensors="pt", **kwargs
    )
    n_prefix = processor(text=[prefix], add_special_tokens=False, return_tensors="pt", **kwargs)[
        "input_ids"
    ].shape[1]
    with torch.inference_mode():
        logprobs = model(**full).logits[0].float().log_softmax(-1)
    ids = full["input_ids"][0]
    total, greedy = 0.0, True
    for pos in range(n_prefix, len(ids)):
        total += float(logprobs[pos - 1, ids[pos]])
        greedy &= int(logprobs[pos - 1].argmax()) == int(ids[pos])
    return total, greedy


def test_loglikelihood_equals_hand_computed_sum(base, samples):
    model, processor = base
    questions, images, answers, choices = samples
    conts = [" " + c[1] for c in choices]  # lmms-eval's target_delimiter is stripped
    batched = loglikelihoods(model, processor, questions, conts, images, batch_size=5)
    for q, im, cont, (score, greedy) in zip(questions, images, conts, batched, strict=True):
        hand_score, hand_greedy = _hand_loglikelihood(model, processor, q, im, cont.strip())
        assert score == pytest.approx(hand_score, abs=1e-4)
        assert greedy == hand_greedy
    # Longer answers (more tokens) get lower totals on a random model: the sum is not a mean.
    assert all(score < 0 for score, _ in batched)


def test_overfit_one_sample_through_the_shared_encoding(base, samples):
    """Training on ``encode``'s labels teaches exactly what generation and scoring read back."""
    model, processor = base
    model = copy.deepcopy(model).train()
    questions, images, answers, choices = samples
    q, image, answer = questions[0], images[0], answers[0]
    batch = encode(processor, [q], [image], [answer])
    torch.manual_seed(0)
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(60):
        loss = model(**batch).loss
        optim.zero_grad()
        loss.backward()
        optim.step()
        if loss.item() < 0.02:
            break
    model.eval()
    assert generate_texts(model, processor, [q], [image], max_new_tokens=24) == [answer]
    scores = loglikelihoods(model, processor, [q] * 4, choices[0], [image] * 4)
    best = max(range(4), key=lambda i: scores[i][0])
    assert choices[0][best] == answer and scores[best][1] is True
    assert all(not greedy for i, (_, greedy) in enumerate(scores) if choices[0][i] != answer)


def test_generation_stops_at_until_strings(base, samples):
    model, processor = base
    questions, images, _, _ = samples
    free = generate_texts(model, processor, questions[:4], images[:4], max_new_tokens=12)
    stop = next(ch for ch in free[0] if not ch.isspace())
    cut = generate_texts(model, processor, questions[:4], images[:4], max_new_tokens=12, until=[stop])
    assert cut[0] == free[0].split(stop, 1)[0].strip()
    assert all(stop not in c for c in cut)
