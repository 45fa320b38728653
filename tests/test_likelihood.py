"""The ``icu_ll_*`` and ``icu_mia_*`` tasks: per-item formulas by hand, AUC by hand and by sklearn, and a real
lmms-eval run on the tiny model whose logged numbers equal a direct forward pass and whose aggregates equal the
mean / AUC of the logged items."""

from __future__ import annotations

import ast
import json
import math
import zlib

import pytest

from icu_tasks.harness import likelihood, mia
from icu_tasks.harness.hooks import DataUnavailable
from icu_tasks.harness.prompts import question_text
from tests.lmms_checks import check_doc_hashes, check_stderrs

# ---------------------------------------------------------------------------------------------------------
# Per-item formulas and aggregations on hand-written inputs

DOC = {
    "id": "x-1",
    "forget_task": 2,
    "split": "forget",
    "view": "qa",
    "field": "salary",
    "answer": "B",
    "choices": ["A", "B", "C", "D"],
}


def test_probability_and_truth_ratio_by_hand():
    # (loglikelihood, is_greedy, n_tokens) per choice, as icu_hf logs them; gold is "B" (index 1).
    responses = ["(-6.0, False, 3)", "(-2.0, True, 2)", "(-8.0, False, 4)", "(-3.0, False, 3)"]
    out = likelihood.process_results(DOC, responses)
    payload = out["answer_prob"]
    assert set(out) == set(likelihood.LL_METRICS)
    strip = {k: v for k, v in payload.items() if k != "score"}
    assert all({k: v for k, v in p.items() if k != "score"} == strip for p in out.values())
    # mean per-token losses: 6/3 = 2, 2/2 = 1, 8/4 = 2, 3/3 = 1; wrong options' mean loss = (2 + 2 + 1) / 3
    assert payload["answer_prob"] == pytest.approx(math.exp(-1.0))
    assert payload["truth_ratio"] == pytest.approx(math.exp(1.0 - 5.0 / 3.0))
    # each metric's per-doc term (lmms-eval's standard error reads it): P; forget min(R, 1/R) = R (R < 1); R
    assert out["answer_prob"]["score"] == pytest.approx(math.exp(-1.0))
    assert out["truth_ratio"]["score"] == pytest.approx(math.exp(-2.0 / 3.0))
    assert out["truth_ratio_mean"]["score"] == pytest.approx(math.exp(-2.0 / 3.0))
    retain = likelihood.process_results(dict(DOC, split="retain_eval"), responses)["truth_ratio"]["score"]
    assert retain == pytest.approx(1.0 - math.exp(-2.0 / 3.0))  # max(0, 1 - R)
    assert payload["option_nll"] == [6.0, 2.0, 8.0, 3.0] and payload["option_tokens"] == [3, 2, 4, 3]
    assert (payload["gold_index"], payload["answer_nll"], payload["answer_tokens"]) == (1, 2.0, 2)
    assert payload["prediction"] == "B" and payload["forget_task"] == 2


def test_truth_ratio_statistic_depends_on_the_split():
    r = [0.5, 2.0, 1.0]  # forget: min(R, 1/R) = 0.5, 0.5, 1 ; other splits: max(0, 1 - R) = 0.5, 0, 0
    forget = [{"split": "forget", "truth_ratio": v} for v in r]
    retain = [{"split": "retain_eval", "truth_ratio": v} for v in r]
    assert likelihood.aggregate_truth_ratio(forget) == pytest.approx(2.0 / 3.0)
    assert likelihood.aggregate_truth_ratio(retain) == pytest.approx(0.5 / 3.0)
    assert likelihood.aggregate_truth_ratio_mean(forget) == pytest.approx(3.5 / 3.0)
    with pytest.raises(ValueError, match="one split at a time"):
        likelihood.aggregate_truth_ratio(forget + retain)


@pytest.mark.parametrize("response", ["(-2.0, True)", (-2.0, True), "-2.0"])
def test_a_response_without_token_count_names_the_model_to_use(response):
    with pytest.raises(likelihood.ScoresUnavailable, match="run them with --model icu_hf"):
        likelihood.scored_response(response)


def _items(member_losses, other_losses, key="loss"):
    return [{"member": 1, key: v} for v in member_losses] + [{"member": 0, key: v} for v in other_losses]


def test_auc_by_hand_with_ties():
    # Pairs (member, non-member) where the non-member's loss is higher count 1, ties 1/2:
    # (1,2) 1  (1,4) 1  (2,2) 1/2  (2,4) 1  (3,2) 0  (3,4) 1  → 4.5 / 6
    items = _items([1.0, 2.0, 3.0], [2.0, 4.0])
    assert mia.aggregate_mia_auc_loss(items) == pytest.approx(0.75)
    assert mia.aggregate_mia_gap_loss(items) == pytest.approx(0.25)
    assert mia.aggregate_mia_privacy_loss(items) == pytest.approx(0.5)  # 1 - 2 * |0.75 - 0.5|
    assert mia.auc_lower_is_member([1.0, 1.0], [1.0]) == pytest.approx(0.5)  # all tied
    assert mia.auc_lower_is_member([0.1, 0.2], [0.3, 0.4]) == 1.0  # members always more familiar
    assert mia.auc_lower_is_member([0.3, 0.4], [0.1, 0.2]) == 0.0  # over-forgetting
    assert math.isnan(mia.auc_lower_is_member([0.1], []))
    zlib_items = _items([0.05, 0.2], [0.1], key="zlib_loss")  # pairs: (0.05, 0.1) 1, (0.2, 0.1) 0
    assert mia.aggregate_mia_auc_zlib(zlib_items) == pytest.approx(0.5)
    assert mia.aggregate_mia_gap_zlib(zlib_items) == pytest.approx(0.0)
    assert mia.aggregate_mia_privacy_zlib(zlib_items) == pytest.approx(1.0)
    over_forgotten = _items([0.3, 0.4], [0.1, 0.2])  # AUC 0: identifiable, privacy 0
    assert mia.aggregate_mia_privacy_loss(over_forgotten) == pytest.approx(0.0)


def test_auc_matches_sklearn_on_random_scores():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    import numpy as np

    rng = np.random.default_rng(0)
    for trial in range(20):
        m, n = rng.integers(1, 30, size=2)
        # rounded scores so that ties happen
        members, others = np.round(rng.normal(0, 1, m), 1), np.round(rng.normal(0.5, 1, n), 1)
        labels = [0] * m + [1] * n  # positive = non-member, higher loss
        expected = sklearn_metrics.roc_auc_score(labels, [*members, *others])
        assert mia.auc_lower_is_member(list(members), list(others)) == pytest.approx(expected), trial


def test_mia_payload_by_hand():
    doc = dict(DOC, answer="Acme Corp", member=0, split="holdout", forget_task=0)
    payload = mia.process_results(doc, ["(-6.0, False, 4)"])["mia_auc_loss"]
    size = len(zlib.compress(b"Acme Corp"))
    assert (payload["member"], payload["answer_nll"], payload["answer_tokens"]) == (0, 6.0, 4)
    assert payload["loss"] == pytest.approx(1.5) and payload["zlib_bytes"] == size
    assert payload["zlib_loss"] == pytest.approx(1.5 / size)
    assert "score" not in payload  # an AUC is no mean over docs: no per-doc term, no lmms-eval stderr


def test_mia_docs_need_a_holdout_split(small_data_dir, monkeypatch):
    monkeypatch.setenv("ICU_DATA_DIR", str(small_data_dir))
    if any(r["split"] == likelihood.HOLDOUT_SPLIT for r in likelihood.open_task_data().rows()):
        # a data dir of this generator has one: stand in a split name that has no rows
        for module in (likelihood, mia):
            monkeypatch.setattr(module, "HOLDOUT_SPLIT", "holdout_not_generated")
    with pytest.raises(
        DataUnavailable, match="^this data dir has no holdout split; regenerate with icu-bench data generate"
    ):
        mia.mia_qa_docs()
    with pytest.raises(DataUnavailable, match="no holdout split"):
        likelihood.holdout_vqa_docs()


def test_membership_docs_alternate(small_data_dir, monkeypatch):
    """Members and non-members alternate, so ``--limit`` keeps both classes (retain-eval stands in here)."""
    monkeypatch.setenv("ICU_DATA_DIR", str(small_data_dir))
    monkeypatch.setattr(mia, "HOLDOUT_SPLIT", "retain_eval")
    docs = mia.mia_qa_docs()
    assert docs["member"][:4] == [1, 0, 1, 0]
    assert {(m, s) for m, s in zip(docs["member"], docs["split"], strict=True)} == {
        (1, "forget"),
        (0, "retain_eval"),
    }
    assert all(docs[likelihood.TOKEN_COUNT_KEY]) and set(docs["view"]) == {"qa"}


def test_task_configs_and_docs(small_data_dir, monkeypatch):
    """Resolved configs of every icu_ll / icu_mia task, and the docs the ll tasks load (all of one split and
    view, each asking icu_hf for token counts)."""
    from lmms_eval.tasks import TaskManager

    from icu_tasks.paths import task_yamls_dir

    manager = TaskManager("WARNING", include_path=str(task_yamls_dir()), include_defaults=False)
    names = [n for n in manager.all_subtasks if n.startswith(("icu_ll_", "icu_mia_"))]
    assert len(names) == 9
    for name in names:
        config = manager._get_config(name)
        is_mia = name.startswith("icu_mia_")
        assert config["output_type"] == ("loglikelihood" if is_mia else "multiple_choice")
        assert config["process_docs"].__module__ == (
            "icu_tasks.harness.mia" if is_mia else "icu_tasks.harness.likelihood"
        )
        metrics = [m["metric"] for m in config["metric_list"]]
        assert metrics == list(mia.MIA_METRICS if is_mia else likelihood.LL_METRICS)
        assert config["metadata"]["version"] >= 1
    monkeypatch.setenv("ICU_DATA_DIR", str(small_data_dir))
    rows = likelihood.open_task_data().rows()
    tasks = manager.load_task_or_group(["icu_ll_forget_vqa", "icu_ll_retain_qa", "icu_ll_utility"])
    for name, (split, view) in {
        "icu_ll_forget_vqa": ("forget", "vqa"),
        "icu_ll_retain_qa": ("retain_eval", "qa"),
        "icu_ll_utility": ("utility", None),
    }.items():
        docs = tasks[name].test_docs()
        expected = [r["id"] for r in rows if r["split"] == split and view in (None, r["view"])]
        assert docs["id"] == expected and all(docs[likelihood.TOKEN_COUNT_KEY])


# ---------------------------------------------------------------------------------------------------------
# A real lmms-eval run on the tiny model


def _hand_answer_nll(model, processor, doc, image, answer: str) -> tuple[float, int]:
    """Minus the summed log p of the tokens of ``" {answer}</s>"`` after the tiny model's prompt, written out
    by hand (one sample, no padding), and their count."""
    import torch

    prompt = "<s>USER: " + ("<image>\n" if image is not None else "") + question_text(doc) + "\nASSISTANT:"
    extra = {"images": [image]} if image is not None else {}
    full = processor(text=[f"{prompt} {answer}</s>"], add_special_tokens=False, return_tensors="pt", **extra)
    n_prompt = processor(text=[prompt], add_special_tokens=False, return_tensors="pt", **extra)[
        "input_ids"
    ].shape[1]
    ids = full["input_ids"]
    pixels = {"pixel_values": full["pixel_values"]} if "pixel_values" in full else {}
    with torch.inference_mode():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), **pixels).logits[0]
    logprobs = logits.double().log_softmax(-1)
    nll = -sum(float(logprobs[t - 1, ids[0, t]]) for t in range(n_prompt, ids.shape[1]))
    return nll, ids.shape[1] - n_prompt


@pytest.fixture(scope="module")
def ll_run(tiny_model_dir, small_data_dir, tmp_path_factory):
    """icu_ll_forget_vqa, icu_ll_retain_qa and icu_mia_qa (retain-eval standing in for the holdout split)
    through lmms-eval in-process (the files the CLI writes), 4 / 4 / 8 docs."""
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("ICU_DATA_DIR", str(small_data_dir))
    monkeypatch.setattr(mia, "HOLDOUT_SPLIT", "retain_eval")
    from icu_unlearn.scoring.evaluate import score
    from icu_unlearn.scoring.icu_hf import IcuHF

    lm = IcuHF(pretrained=str(tiny_model_dir), batch_size=3)
    out = tmp_path_factory.mktemp("ll_run") / "eval"
    tasks = ["icu_ll_forget_vqa", "icu_ll_retain_qa"]
    results = score(lm, f"pretrained={tiny_model_dir}", tasks, out / "ll", data_dir=small_data_dir, limit=4)
    mia_results = score(
        lm, f"pretrained={tiny_model_dir}", ["icu_mia_qa"], out / "mia", data_dir=small_data_dir, limit=8
    )
    monkeypatch.undo()

    def samples(task: str) -> list[dict]:
        path = next(out.rglob(f"*_samples_{task}.jsonl"))
        return [json.loads(line) for line in path.open()]

    return lm, {**results["results"], **mia_results["results"]}, samples


def test_logged_items_equal_a_direct_forward_pass(ll_run, small_data_dir, monkeypatch):
    from icu_tasks.data.dataset import open_data

    lm, _, samples = ll_run
    data = open_data(small_data_dir)
    rows = {r["id"]: r for r in data.rows()}
    for task in ("icu_ll_forget_vqa", "icu_ll_retain_qa"):
        records = samples(task)
        assert len(records) == 4
        for record in records:
            item = record["answer_prob"]
            doc = rows[item["id"]]
            image = data.load_image(doc["image"]) if doc["image"] else None
            hand = [_hand_answer_nll(lm.model, lm.processor, doc, image, c) for c in doc["choices"]]
            assert item["option_nll"] == pytest.approx([h[0] for h in hand], abs=1e-4)
            assert item["option_tokens"] == [h[1] for h in hand]
            assert item["profile_id"] == doc["profile_id"]
            gold = doc["choices"].index(doc["answer"])
            losses = [nll / n for nll, n in hand]
            wrong = [loss for i, loss in enumerate(losses) if i != gold]
            assert item["answer_prob"] == pytest.approx(math.exp(-losses[gold]), rel=1e-4)
            assert item["truth_ratio"] == pytest.approx(math.exp(losses[gold] - sum(wrong) / 3), rel=1e-4)
            # what the samples file shows as the response carries the same count
            assert [ast.literal_eval(r)[2] for r in record["filtered_resps"]] == item["option_tokens"]
    for record in samples("icu_mia_qa"):
        item = record["mia_auc_loss"]
        doc = rows[item["id"]]
        nll, n = _hand_answer_nll(lm.model, lm.processor, doc, None, doc["answer"])
        assert (item["answer_nll"], item["answer_tokens"]) == (pytest.approx(nll, abs=1e-4), n)
        assert item["member"] == int(doc["split"] == "forget")
    # each sample's doc_hash is the hash of its own doc (icu_hf hands lmms-eval the doc it scored)
    monkeypatch.setenv("ICU_DATA_DIR", str(small_data_dir))
    monkeypatch.setattr(mia, "HOLDOUT_SPLIT", "retain_eval")
    check_doc_hashes(samples("icu_ll_forget_vqa"), likelihood.forget_vqa_docs())
    check_doc_hashes(samples("icu_ll_retain_qa"), likelihood.retain_qa_docs())
    check_doc_hashes(samples("icu_mia_qa"), mia.mia_qa_docs())


def test_aggregates_equal_the_logged_items(ll_run):
    _, results, samples = ll_run
    for task, split in (("icu_ll_forget_vqa", "forget"), ("icu_ll_retain_qa", "retain_eval")):
        items = [r["truth_ratio"] for r in samples(task)]
        assert {i["split"] for i in items} == {split}
        probs, ratios = [i["answer_prob"] for i in items], [i["truth_ratio"] for i in items]
        assert results[task]["answer_prob,none"] == pytest.approx(sum(probs) / 4)
        assert results[task]["truth_ratio_mean,none"] == pytest.approx(sum(ratios) / 4)
        stat = [min(r, 1 / r) for r in ratios] if split == "forget" else [max(0.0, 1 - r) for r in ratios]
        assert results[task]["truth_ratio,none"] == pytest.approx(sum(stat) / 4)
        assert 0 < min(probs) and max(probs) < 0.5  # an untrained model: no answer is likely
        # lmms-eval's standard error of each mean, from the per-doc terms recomputed above (continuous: > 0)
        profiles = [i["profile_id"] for i in items]
        for name, terms in (("answer_prob", probs), ("truth_ratio", stat), ("truth_ratio_mean", ratios)):
            assert check_stderrs(results[task], name, terms, profiles) > 0, (task, name)
    # an AUC is not a mean over docs and lmms-eval cannot bootstrap a !function aggregation: no stderr
    for name in mia.MIA_METRICS:
        assert results["icu_mia_qa"][f"{name}_stderr_clt,none"] == "N/A"
    items = [r["mia_auc_zlib"] for r in samples("icu_mia_qa")]
    assert [i["member"] for i in items] == [1, 0] * 4
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    for score in ("loss", "zlib"):
        key = mia.SCORES[score]
        expected = sklearn_metrics.roc_auc_score([1 - i["member"] for i in items], [i[key] for i in items])
        assert results["icu_mia_qa"][f"mia_auc_{score},none"] == pytest.approx(expected)
        assert results["icu_mia_qa"][f"mia_gap_{score},none"] == pytest.approx(expected - 0.5)
        assert results["icu_mia_qa"][f"mia_privacy_{score},none"] == pytest.approx(
            1 - 2 * abs(expected - 0.5)
        )


# ---------------------------------------------------------------------------------------------------------
# End to end on the fine-tuned tiny model (slow: the vanilla fixture, a stage, and a holdout split)


@pytest.mark.slow
def test_vanilla_is_far_from_holdout_and_forgetting_task_1_moves_it(
    vanilla_model_dir, small_data_dir, vanilla_knowledge, tmp_path, monkeypatch
):
    """The vanilla model tells forget items from never-seen holdout items (AUC >= 0.8 per view, the issue's
    bar); after a stage that forgets task 1, task 1's AUC and answer probability drop. Read back through the
    continual report's reader, so the per-task AUC is the one the report shows."""
    from icu_tasks.data.dataset import open_data
    from icu_tasks.report.likelihood import likelihood_summary
    from icu_unlearn.methods import build_method
    from icu_unlearn.scoring.evaluate import score
    from icu_unlearn.scoring.icu_hf import IcuHF
    from icu_unlearn.training.unlearn import run_stage
    from tests.fixtures_unlearn import probe_examples
    from tests.test_methods import TEST_CONFIGS, known_items_stopper

    if not any(r["split"] == likelihood.HOLDOUT_SPLIT for r in open_data(small_data_dir).rows()):
        pytest.fail(
            "the small data fixture has no holdout split: this test needs the data generator's holdout"
        )
    monkeypatch.setenv("ICU_DATA_DIR", str(small_data_dir))
    run = tmp_path / "run"
    lm = IcuHF(pretrained=str(vanilla_model_dir), batch_size=16)
    probe = probe_examples(small_data_dir)["forget"]
    items = [e for v in ("vqa", "qa") for e in probe[v]]
    known = [e for e, s in zip(items, vanilla_knowledge.scores("forget"), strict=True) if s.correct]
    stopper = known_items_stopper(known, lm.processor)
    method = build_method("npo_diff", **TEST_CONFIGS["npo_diff"])
    stage = run_stage(method, vanilla_model_dir, small_data_dir, 1, run, device="cpu", callbacks=[stopper])
    tasks = ["icu_mia_vqa", "icu_mia_qa", "icu_ll_forget_vqa", "icu_ll_forget_qa"]
    args = f"pretrained={vanilla_model_dir}"
    vanilla = score(lm, args, tasks, run / "eval" / "stage_0", data_dir=small_data_dir)["results"]
    lm.load_adapter(str(stage.path))
    score(lm, args, tasks, run / "eval" / "stage_1", data_dir=small_data_dir)

    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    for view in ("vqa", "qa"):
        assert vanilla[f"icu_mia_{view}"]["mia_auc_loss,none"] >= 0.8, vanilla[f"icu_mia_{view}"]
        path = next((run / "eval" / "stage_0").rglob(f"*_samples_icu_mia_{view}.jsonl"))
        items = [json.loads(line)["mia_auc_loss"] for line in path.open()]
        assert {i["split"] for i in items} == {"forget", likelihood.HOLDOUT_SPLIT}
        for name, key in mia.SCORES.items():
            expected = sklearn_metrics.roc_auc_score(
                [1 - i["member"] for i in items], [i[key] for i in items]
            )
            assert vanilla[f"icu_mia_{view}"][f"mia_auc_{name},none"] == pytest.approx(expected)
    summary = likelihood_summary(run)
    for group in ("vqa", "qa", "pooled"):
        before, after = summary["stages"][0][group], summary["stages"][1][group]
        assert after["task_k_mia_auc_loss"] < before["mia_auc_loss"][0], (group, before, after)
        assert after["task_k_prob"] < before["forget_prob"][0], (group, before, after)
    # the continual report reads the same samples item by item, each with its profile (the bootstrap's unit);
    # stage 1 requested task 1 alone, stage 0 stands for every task the run forgets (task 1 here)
    from icu_tasks.report.results import load_run

    loaded = load_run(run)
    logged = sum(1 for p in (run / "eval").rglob("*_samples_icu_mia_*.jsonl") for _ in p.open())
    assert len(loaded.items.mia) == logged > 0
    assert not [key for key in loaded.items.units.keys if key[1].startswith("item:")]
    series = loaded.estimates.series
    for group in ("vqa", "qa", "pooled"):
        before, after = summary["stages"][0][group], summary["stages"][1][group]
        assert series[f"auc_loss_{group}"][0] == pytest.approx(before["mia_auc_loss"][0])
        assert series[f"auc_loss_{group}"][1] == pytest.approx(after["task_k_mia_auc_loss"])
        privacy = 1 - 2 * abs(after["task_k_mia_auc_loss"] - 0.5)
        assert series[f"privacy_loss_{group}"][1] == pytest.approx(privacy)
