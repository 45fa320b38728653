"""Per-stage probability, truth ratio and MIA AUC of a run dir (icu_tasks.report.likelihood) and their
report.md / report.json section, from hand-written samples files with hand-computed expectations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from icu_tasks.report.likelihood import likelihood_markdown, likelihood_summary
from icu_tasks.report.results import load_run
from icu_tasks.report.write import write_report
from tests.lmms_eval_output import doc, write_lmms_eval_output


def _ll(split: str, task: int, prob: float, ratio: float, view: str = "qa") -> dict:
    return {"split": split, "view": view, "forget_task": task, "answer_prob": prob, "truth_ratio": ratio}


def _mia(member: int, task: int, loss: float, zlib_loss: float, view: str = "qa") -> dict:
    split = "forget" if member else "holdout"
    return {
        "split": split,
        "view": view,
        "forget_task": task,
        "member": member,
        "loss": loss,
        "zlib_loss": zlib_loss,
    }


#: stage -> (likelihood payloads, membership payloads), text view only.
STAGES = {
    0: (
        [
            _ll("forget", 1, 0.8, 0.1),
            _ll("forget", 1, 0.6, 0.5),
            _ll("forget", 2, 0.7, 0.2),
            _ll("retain_eval", 0, 0.5, 0.25),
            _ll("holdout", 0, 0.1, 1.0),
        ],
        # members task 1: 0.1, 0.2; task 2: 0.3; holdout: 0.5, 0.15 (zlib scores reversed)
        [
            _mia(1, 1, 0.1, 0.9),
            _mia(1, 1, 0.2, 0.8),
            _mia(1, 2, 0.3, 0.7),
            _mia(0, 0, 0.5, 0.5),
            _mia(0, 0, 0.15, 0.85),
        ],
    ),
    1: (
        [
            _ll("forget", 1, 0.2, 2.0),
            _ll("forget", 1, 0.1, 1.0),
            _ll("forget", 2, 0.7, 0.2),
            _ll("retain_eval", 0, 0.4, 0.5),
        ],
        [_mia(1, 1, 0.6, 0.1), _mia(1, 1, 0.7, 0.1), _mia(1, 2, 0.3, 0.7), _mia(0, 0, 0.5, 0.5)],
    ),
}


def _write_samples(folder: Path, date: str, task: str, key: str, payloads: list[dict]) -> None:
    """A results file + samples file as lmms-eval lays them out (only what the reader needs)."""
    folder.mkdir(parents=True, exist_ok=True)
    results = {"configs": {task: {"task": task}}, "n-samples": {task: {"effective": len(payloads)}}}
    (folder / f"{date}_results.json").write_text(json.dumps(results))
    lines = [json.dumps({"doc_id": i, key: p}) for i, p in enumerate(payloads)]
    (folder / f"{date}_samples_{task}.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture
def run_dir(tmp_path) -> Path:
    root = tmp_path / "run"
    root.mkdir()
    (root / "run.json").write_text(json.dumps({"name": "ll-demo", "method": "npo", "stages": 1}))
    for k, (ll, mia) in STAGES.items():
        stage = root / "eval" / f"stage_{k}"
        docs = {"icu_forget_qa": [(doc("f", "forget", "qa", 1, i), i == 0) for i in range(2)]}
        docs["icu_retain_qa"] = [(doc("r", "retain_eval", "qa", 0, 0), True)]
        docs["icu_utility"] = [(doc("u", "utility", "qa", 0, 0), True)]
        write_lmms_eval_output(stage, docs, date=f"20260101_00000{k}")
        _write_samples(stage / "model", f"20260101_10000{k}", "icu_ll_all_qa", "answer_prob", ll)
        _write_samples(stage / "model", f"20260101_20000{k}", "icu_mia_qa", "mia_auc_loss", mia)
    return root


def test_per_stage_numbers_by_hand(run_dir):
    summary = likelihood_summary(run_dir)
    assert summary["tasks"] == 2 and len(summary["stages"]) == 2
    s0, s1 = summary["stages"][0]["qa"], summary["stages"][1]["qa"]
    assert s0["forget_prob"] == pytest.approx([0.7, 0.7])
    # forget statistic mean(min(R, 1/R)): task 1 (0.1 + 0.5) / 2, task 2 0.2
    assert s0["forget_truth_ratio"] == pytest.approx([0.3, 0.2])
    assert s0["retain_prob"] == pytest.approx(0.5) and s0["retain_truth_ratio"] == pytest.approx(0.75)
    assert s0["holdout_prob"] == pytest.approx(0.1) and s0["utility_prob"] is None
    # AUC task 1: (0.1 vs 0.5) 1, (0.1 vs 0.15) 1, (0.2 vs 0.5) 1, (0.2 vs 0.15) 0 -> 3/4; task 2: 1/2;
    # all: 4/6. zlib scores: members 0.9, 0.8 vs 0.5, 0.85 -> (0 + 0 + 0 + 1) / 4
    assert s0["mia_auc_loss"] == pytest.approx([0.75, 0.5]) and s0["mia_auc_loss_all"] == pytest.approx(4 / 6)
    assert s0["mia_auc_zlib"][0] == pytest.approx(0.25)
    assert s0["task_k_prob"] is None and s0["task_k_mia_auc_loss"] is None  # no task 0
    # stage 1 forgets task 1: P 0.15, statistic (0.5 + 1) / 2, both members above the one holdout loss
    assert s1["task_k_prob"] == pytest.approx(0.15) and s1["task_k_truth_ratio"] == pytest.approx(0.75)
    assert s1["task_k_mia_auc_loss"] == 0.0 and s1["task_k_mia_auc_zlib"] == 1.0
    assert s1["earlier_prob"] is None and s1["earlier_mia_auc_loss"] is None  # no task before task 1
    assert s1["retain_truth_ratio"] == pytest.approx(0.5)
    assert summary["stages"][0]["pooled"]["forget_prob"] == s0["forget_prob"]  # the qa view is all there is
    assert summary["stages"][0]["vqa"]["forget_prob"] == [None, None]


def test_report_has_the_likelihood_section(run_dir, tmp_path):
    out = tmp_path / "report"
    report = write_report([load_run(run_dir)], out, n_boot=0)
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["runs"][0]["likelihood"] == json.loads(json.dumps(report["runs"][0]["likelihood"]))
    assert on_disk["runs"][0]["likelihood"]["stages"][1]["qa"]["task_k_mia_auc_zlib"] == 1.0
    figure = on_disk["runs"][0]["likelihood"]["figure"]
    assert (out / figure).stat().st_size > 1000 and f"![likelihood]({figure})" in (
        out / "report.md"
    ).read_text()
    md = (out / "report.md").read_text()
    assert "## Probability, truth ratio and membership inference" in md
    # rows (pooled = qa): P, TR, AUC LOSS, AUC zlib of task 1; P task k, P < k, TR k, TR < k, AUC LOSS k, < k,
    # AUC zlib k, < k; P retain, TR retain, P holdout
    row0 = "| 0 | 0.700 | 0.300 | 0.750 | 0.250 | " + "n/a | " * 8 + "0.500 | 0.750 | 0.100 |"
    row1 = "| 1 | 0.150 | 0.750 | 0.000 | 1.000 | 0.150 | n/a | 0.750 | n/a | 0.000 | n/a | 1.000 | n/a "
    assert row0 in md and row1 + "| 0.400 | 0.500 | n/a |" in md


def test_a_run_without_likelihood_samples(tmp_path):
    root = tmp_path / "run"
    write_lmms_eval_output(
        root / "eval" / "stage_0",
        {"icu_retain_qa": [(doc("r", "retain_eval", "qa", 0, 0), True)]},
        date="20260101_000000",
    )
    assert likelihood_summary(root) is None and likelihood_markdown("x", None) == []
