"""``icu_hf`` as lmms-eval sees it: entry-point registration, model_args, requests, and the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lmms_eval.api.instance import Instance

from icu_tasks.dataset import open_data
from icu_tasks.errors import ConfigError, StageError
from icu_tasks.prompts import question_text
from icu_unlearn.inference import generate_texts, loglikelihoods
from icu_unlearn.lmms_model import IcuHF

LMMS_EVAL = Path(sys.executable).with_name("lmms-eval")
REPO = Path(__file__).resolve().parent.parent


def test_registered_through_the_entry_point():
    from lmms_eval.models import get_model

    assert get_model("icu_hf") is IcuHF


def test_unknown_and_missing_model_args(tiny_model_dir):
    with pytest.raises(ConfigError, match="unknown model_arg 'adaptor' \\(did you mean 'adapter'\\?\\)"):
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


def _requests(docs, kind: str, gen_kwargs: dict | None = None) -> list[Instance]:
    def doc_to_visual(doc):
        return [doc["_image"]] if doc["_image"] is not None else []

    out = []
    for i, doc in enumerate(docs):
        second = dict(gen_kwargs or {}) if kind == "generate_until" else " " + doc["choices"][0]
        args = (question_text(doc), second, doc_to_visual, i, "icu_test", "test")
        meta = {"task": "icu_test", "doc_id": i, "repeats": 1}
        out.append(Instance(request_type=kind, arguments=args, idx=0, metadata=meta))
    return out


def test_requests_match_the_inference_functions(tiny_model_dir, tiny_adapter_dir, docs):
    lm = IcuHF(pretrained=str(tiny_model_dir), adapter=str(tiny_adapter_dir), batch_size=4)
    lm.task_dict = {"icu_test": {"test": docs}}
    questions = [question_text(d) for d in docs]
    images = [d["_image"] for d in docs]

    answers = lm.generate_until(_requests(docs, "generate_until", {"max_new_tokens": 6, "until": ["\n"]}))
    assert answers == generate_texts(lm.model, lm.processor, questions, images, 6, 1, until=["\n"])
    scores = lm.loglikelihood(_requests(docs, "loglikelihood"))
    expected = loglikelihoods(lm.model, lm.processor, questions, [d["choices"][0] for d in docs], images, 1)
    assert [s for s, _ in scores] == pytest.approx([s for s, _ in expected], abs=1e-4)

    # Switching stages keeps the base loaded: back to the base model, then to the adapter again.
    lm.load_adapter(None)
    base_answers = lm.generate_until(_requests(docs, "generate_until", {"max_new_tokens": 6}))
    assert base_answers != answers
    lm.load_adapter(str(tiny_adapter_dir))
    assert (
        lm.generate_until(_requests(docs, "generate_until", {"max_new_tokens": 6, "until": ["\n"]}))
        == answers
    )
    lm.clean()  # lmms-eval calls this after every evaluation; the model must survive it
    assert lm.model is not None


@pytest.mark.slow
def test_cli_unknown_model_arg_is_one_line_and_fails(tiny_model_dir):
    cmd = [str(LMMS_EVAL), "--model", "icu_hf", "--model_args", f"pretrained={tiny_model_dir},bogus=1"]
    cmd += ["--tasks", "icu_forget_vqa", "--include_path", str(REPO / "task_yamls")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith("error: icu_hf: unknown model_arg 'bogus'")
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.slow
def test_cli_scores_an_adapter_stage(tiny_model_dir, tiny_adapter_dir, small_data_dir, tmp_path):
    """``lmms-eval --model icu_hf --model_args pretrained=...,adapter=...`` on a generate and an MC task."""
    args = f"pretrained={tiny_model_dir},adapter={tiny_adapter_dir},batch_size=4,max_new_tokens=8"
    cmd = [
        str(LMMS_EVAL),
        "--model",
        "icu_hf",
        "--model_args",
        args,
        "--tasks",
        "icu_forget_vqa,icu_forget_qa_mc",
    ]
    cmd += ["--include_path", str(REPO / "task_yamls"), "--limit", "4", "--output_path", str(tmp_path)]
    cmd += ["--log_samples"]
    env = {**os.environ, "ICU_DATA_DIR": str(small_data_dir)}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(next(tmp_path.rglob("*_results.json")).read_text())
    assert results["config"]["model_args"] == args
    assert set(results["results"]) >= {"icu_forget_vqa", "icu_forget_qa_mc"}
    samples = [json.loads(line) for line in next(tmp_path.rglob("*samples_icu_forget_vqa.jsonl")).open()]
    assert len(samples) == 4
    payload = samples[0]["exact_match"]
    assert payload["forget_task"] >= 1 and payload["view"] == "vqa"
    # max_new_tokens=8 in model_args caps the task's 32: a random model never stops early, so ≤ 8 tokens.
    assert all(len(s["exact_match"]["prediction"].split()) <= 8 for s in samples)
