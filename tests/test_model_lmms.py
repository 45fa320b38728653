"""``icu_hf`` as lmms-eval sees it: entry-point registration, model_args, requests, and the real CLI."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest
from lmms_eval.api.instance import Instance

from icu_tasks.data.dataset import open_data
from icu_tasks.errors import ConfigError, StageError
from icu_tasks.harness import hooks
from icu_tasks.harness.prompts import question_text
from icu_unlearn.scoring.icu_hf import IcuHF
from tests.lmms_checks import check_doc_hashes, check_stderrs
from tests.subprocess_env import started_together

LMMS_EVAL = Path(sys.executable).with_name("lmms-eval")
REPO = Path(__file__).resolve().parent.parent


def test_registered_through_the_entry_point():
    from lmms_eval.models import get_model

    assert get_model("icu_hf") is IcuHF


def test_unknown_and_missing_model_args(tiny_model_dir):
    with pytest.raises(ConfigError, match="unknown model_arg 'adaptor'; did you mean 'adapter'\\?"):
        IcuHF.create_from_arg_string(f"pretrained={tiny_model_dir},adaptor=x")
    with pytest.raises(ConfigError, match="pretrained"):
        IcuHF.create_from_arg_string("batch_size=2")
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        IcuHF.create_from_arg_string(f"pretrained={tiny_model_dir},batch_size=0")
    with pytest.raises(StageError, match="stage dir not found"):
        IcuHF.create_from_arg_string(f"pretrained={tiny_model_dir},adapter={tiny_model_dir}/nope")


def test_model_args_win_over_cli_flags(tiny_model_dir):
    lm = IcuHF.create_from_arg_string(
        f"pretrained={tiny_model_dir},batch_size=3",
        {"batch_size": 1, "device": "cpu", "max_batch_size": None},
    )
    assert lm.batch_size == 3 and str(lm.device) == "cpu"
    assert IcuHF.create_from_arg_string(f"pretrained={tiny_model_dir}", {"batch_size": "5"}).batch_size == 5


@pytest.fixture(scope="module")
def docs(small_data_dir):
    data = open_data(small_data_dir)
    rows = data.rows(view="vqa")[:3] + data.rows(view="qa")[:3]
    for row in rows:
        row["_image"] = data.load_image(row["image"]) if row["image"] else None
    return rows


def _requests(docs, kind: str, gen_kwargs: dict | list[dict] | None = None) -> list[Instance]:
    """lmms-eval requests for ``docs``; ``gen_kwargs`` is one dict for every doc or one dict per doc."""

    def doc_to_visual(doc):
        return [doc["_image"]] if doc["_image"] is not None else []

    per_doc = gen_kwargs if isinstance(gen_kwargs, list) else [gen_kwargs] * len(docs)
    out = []
    for i, (doc, kwargs) in enumerate(zip(docs, per_doc, strict=True)):
        second = dict(kwargs or {}) if kind == "generate_until" else " " + doc["choices"][0]
        args = (question_text(doc), second, doc_to_visual, i, "icu_test", "test")
        meta = {"task": "icu_test", "doc_id": i, "repeats": 1}
        out.append(Instance(request_type=kind, arguments=args, idx=0, metadata=meta))
    return out


# ---------------------------------------------------------------------------------------------------------
# An independent reference for icu_hf's two request types: the tiny model's prompt written out by hand, one
# sample at a time (no batching, no padding, no KV cache, no ``generate``), every step a full forward pass.


def _hand_inputs(processor, doc, text: str):
    """Token ids (+ pixels) of ``text`` for one doc; ``text`` already starts with ``<s>``."""
    images = {"images": [doc["_image"]]} if doc["_image"] is not None else {}
    return processor(text=[text], return_tensors="pt", add_special_tokens=False, **images)


def _hand_prompt(doc) -> str:
    """The tiny model's chat template (``icu_unlearn.models.tiny.CHAT_TEMPLATE``) written out for one doc."""
    image = "<image>\n" if doc["_image"] is not None else ""
    return f"<s>USER: {image}{question_text(doc)}\nASSISTANT:"


def _forward_logits(model, inputs, ids):
    import torch

    extra = {"pixel_values": inputs["pixel_values"]} if "pixel_values" in inputs else {}
    with torch.inference_mode():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids), **extra).logits[0]


def _greedy_one_by_one(model, processor, doc, max_new_tokens: int, until: list[str]) -> str:
    """Greedy decoding by hand: append the argmax token until EOS or ``max_new_tokens``, then cut at ``until``."""
    import torch

    tok = processor.tokenizer
    inputs = _hand_inputs(processor, doc, _hand_prompt(doc))
    ids, new = inputs["input_ids"], []
    for _ in range(max_new_tokens):
        token = int(_forward_logits(model, inputs, ids)[-1].argmax())
        if token == tok.eos_token_id:
            break
        new.append(token)
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    text = tok.decode(new, skip_special_tokens=True)
    for stop in until:
        text = text.split(stop, 1)[0]
    return text.strip()


def _continuation_logprob(model, processor, doc, answer: str) -> tuple[float, bool]:
    """Sum of log p(token) over the assistant turn ``" {answer}</s>"`` after the prompt, and whether every one
    of those tokens is the argmax (the template's answer turn, as in training)."""
    prompt = _hand_inputs(processor, doc, _hand_prompt(doc))
    full = _hand_inputs(processor, doc, f"{_hand_prompt(doc)} {answer}</s>")
    ids, n_prompt = full["input_ids"], prompt["input_ids"].shape[1]
    assert ids[0, :n_prompt].tolist() == prompt["input_ids"][0].tolist()  # the answer extends the prompt
    assert ids[0, -1] == processor.tokenizer.eos_token_id
    logprobs = _forward_logits(model, full, ids).double().log_softmax(-1)
    total, greedy = 0.0, True
    for t in range(n_prompt, ids.shape[1]):  # token t is predicted at position t - 1
        total += float(logprobs[t - 1, ids[0, t]])
        greedy = greedy and int(logprobs[t - 1].argmax()) == int(ids[0, t])
    return total, greedy


def test_requests_match_an_unbatched_reference(tiny_model_dir, tiny_adapter_dir, docs):
    """icu_hf (batch 4 of mixed image/text docs, two generation settings in one call) answers what greedy
    decoding by hand answers one doc at a time, and its log-likelihoods are the hand-summed token log-probs."""
    lm = IcuHF(pretrained=str(tiny_model_dir), adapter=str(tiny_adapter_dir), batch_size=4)
    lm.task_dict = {"icu_test": {"test": docs}}
    # Two settings groups (batched separately by icu_hf); the answers must come back in request order.
    settings = [{"max_new_tokens": 6, "until": ["\n"]} if i % 2 else {"max_new_tokens": 3} for i in range(6)]

    def reference(model):
        return [
            _greedy_one_by_one(model, lm.processor, d, s["max_new_tokens"], s.get("until", []))
            for d, s in zip(docs, settings, strict=True)
        ]

    answers = lm.generate_until(_requests(docs, "generate_until", settings))
    expected = reference(lm.model)
    assert answers == expected
    assert all(expected) and len(set(expected)) > 1  # a comparison of real, distinct answers

    # ``until`` cuts the answer: stop at a piece from the middle of doc 1's answer (6 new tokens)
    full = expected[1]
    stop = full[len(full) // 2 :][:2]
    assert len(full) >= 4 and stop.strip()
    cut = lm.generate_until(_requests(docs, "generate_until", {"max_new_tokens": 6, "until": [stop]})[1:2])
    assert cut == [_greedy_one_by_one(lm.model, lm.processor, docs[1], 6, [stop])]
    assert len(cut[0]) < len(full)

    scores = lm.loglikelihood(_requests(docs, "loglikelihood"))
    hand = [_continuation_logprob(lm.model, lm.processor, d, d["choices"][0]) for d in docs]
    assert [s for s, _ in scores] == pytest.approx([s for s, _ in hand], abs=1e-4)
    assert [g for _, g in scores] == [g for _, g in hand]

    # Switching stages keeps the base loaded: back to the base model (other answers, same reference), then to
    # the adapter again (the same answers as before).
    lm.load_adapter(None)
    base_answers = lm.generate_until(_requests(docs, "generate_until", settings))
    assert base_answers == reference(lm.model)
    assert base_answers != answers
    lm.load_adapter(str(tiny_adapter_dir))
    assert lm.generate_until(_requests(docs, "generate_until", settings)) == answers
    lm.clean()  # lmms-eval calls this after every evaluation; the model must survive it
    assert lm.model is not None


ADAPTER_ARGS = "pretrained={base},adapter={adapter},batch_size=4,max_new_tokens=8"


@pytest.fixture(scope="module")
def unknown_arg_run(tmp_path_factory, tiny_model_dir, small_data_dir):
    """The literal ``lmms-eval`` CLI with a ``model_args`` key icu_hf does not have, started in the background
    when the module's first test asks for it (the other tests run meanwhile)."""
    tmp = tmp_path_factory.mktemp("model_lmms_cli")
    cmd = [
        str(LMMS_EVAL), "--model", "icu_hf", "--model_args", f"pretrained={tiny_model_dir},bogus=1",
        "--tasks", "icu_forget_vqa", "--include_path", str(REPO / "task_yamls"),
    ]  # fmt: skip
    with started_together(tmp, {"unknown_arg": (cmd, small_data_dir)}) as runs:
        yield runs["unknown_arg"]


@pytest.fixture(scope="module")
def adapter_eval(tmp_path_factory, tiny_model_dir, tiny_adapter_dir, small_data_dir) -> Path:
    """``--model_args pretrained=...,adapter=...`` through lmms-eval's Python API (what ``icu-bench run``
    calls; the shell-loop test in test_pipeline.py shows the CLI gives the same files and scores): a generate
    and an MC task on base + adapter, 9 docs (the first 8 are one profile's, so the standard error clustered
    by profile has two clusters). Returns the output dir."""
    from icu_unlearn.scoring.evaluate import score

    out = tmp_path_factory.mktemp("model_lmms_api") / "eval"
    args = ADAPTER_ARGS.format(base=tiny_model_dir, adapter=tiny_adapter_dir)
    lm = IcuHF.create_from_arg_string(args)
    score(lm, args, ["icu_forget_vqa", "icu_forget_qa_mc"], out, data_dir=small_data_dir, limit=9)
    return out


@pytest.mark.slow
def test_adapter_stage_scores_like_the_hand_reference(
    adapter_eval, unknown_arg_run, tiny_model_dir, tiny_adapter_dir, small_data_dir, monkeypatch
):
    """model_args ``pretrained=...,adapter=...`` on a generate and an MC task: the logged answers and choice
    log-likelihoods are the hand reference's for base + adapter, 8 new tokens; every metric has lmms-eval's
    CLT and per-profile clustered standard error of the logged per-doc values, and every sample its own doc
    hash. (Asks for ``unknown_arg_run`` only to start that CLI process early, beside this test.)"""
    out = adapter_eval
    results = json.loads(next(out.rglob("*_results.json")).read_text())
    assert results["config"]["model_args"] == ADAPTER_ARGS.format(
        base=tiny_model_dir, adapter=tiny_adapter_dir
    )
    assert set(results["results"]) >= {"icu_forget_vqa", "icu_forget_qa_mc"}

    data = open_data(small_data_dir)
    rows = {r["id"]: r for r in data.rows()}
    lm = IcuHF(pretrained=str(tiny_model_dir), adapter=str(tiny_adapter_dir))

    def doc_of(record: dict, metric: str) -> dict:
        row = dict(rows[record[metric]["id"]])
        row["_image"] = data.load_image(row["image"]) if row["image"] else None
        return row

    samples = [json.loads(line) for line in next(out.rglob("*samples_icu_forget_vqa.jsonl")).open()]
    assert len(samples) == 9
    for record in samples:
        doc, payload = doc_of(record, "exact_match"), record["exact_match"]
        assert payload["forget_task"] == doc["forget_task"] >= 1 and payload["view"] == "vqa"
        # max_new_tokens=8 in model_args caps the task's 32 (a random model never stops early)
        assert payload["prediction"] == _greedy_one_by_one(lm.model, lm.processor, doc, 8, ["\n"])
    mc = [json.loads(line) for line in next(out.rglob("*samples_icu_forget_qa_mc.jsonl")).open()]
    assert len(mc) == 9
    hand_mc = []
    for record in mc:
        doc = doc_of(record, "mc_accuracy")
        logged = [ast.literal_eval(r) for r in record["filtered_resps"]]  # "(loglikelihood, is_greedy)"
        hand = [_continuation_logprob(lm.model, lm.processor, doc, c) for c in doc["choices"]]
        assert [ll for ll, _ in logged] == pytest.approx([ll for ll, _ in hand], abs=1e-4)
        best = max(range(4), key=lambda i: (hand[i][0], -i))  # highest log-likelihood, first on ties
        assert record["mc_accuracy"]["prediction"] == doc["choices"][best]
        hand_mc.append(float(doc["choices"][best] == doc["answer"]))

    profiles = [rows[r["exact_match"]["id"]]["profile_id"] for r in samples]
    assert len(set(profiles)) == 2
    for name in ("exact_match", "contains", "rougeL_recall"):
        values = [r[name][name] for r in samples]
        assert [r[name]["score"] for r in samples] == values
        check_stderrs(results["results"]["icu_forget_vqa"], name, values, profiles)
    profiles = [rows[r["mc_accuracy"]["id"]]["profile_id"] for r in mc]
    check_stderrs(results["results"]["icu_forget_qa_mc"], "mc_accuracy", hand_mc, profiles)
    monkeypatch.setenv("ICU_DATA_DIR", str(small_data_dir))
    check_doc_hashes(samples, hooks.forget_vqa_docs())
    check_doc_hashes(mc, hooks.forget_qa_docs())


# Last in the module: the CLI process started beside the tests above.
@pytest.mark.slow
def test_cli_unknown_model_arg_is_one_line_and_fails(unknown_arg_run):
    proc = unknown_arg_run.result(timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]  # SystemExit("error: ...") from create_from_arg_string
    assert proc.stderr.strip().splitlines()[-1].startswith("error: icu_hf: unknown model_arg 'bogus'")
    assert "Traceback" not in proc.stderr + proc.stdout
