"""Multi-process scoring: ``accelerate launch --num_processes 2 -m lmms_eval ... --model icu_hf`` on CPU.

lmms-eval 0.7.3 shards the requests itself: ``evaluate`` builds each task's requests with
``rank``/``world_size`` from the environment (doc i goes to rank i mod world_size), sets ``lm._rank`` /
``lm._world_size``, pads the shorter shard with copies of a request whose answers are dropped, and gathers
the logged samples and per-sample metrics on rank 0, which alone writes the files. ``icu_hf`` only has to
answer the requests it is given (and bind ``cuda:LOCAL_RANK`` on a GPU). This test checks the result: the same
samples, answers and scores as one process. The model is the tiny untrained one (its answers differ from doc
to doc, so a doc scored on the wrong rank or twice shows up as a mismatch); ``--limit 9`` gives uneven shards
(5 + 4), so lmms-eval's padding request is exercised; one generate and one multiple-choice task. The one-process
reference runs in this process (``icu_unlearn.scoring.evaluate.score``: lmms-eval's ``simple_evaluate`` with the CLI's
seeds, writing the files the CLI writes, one thread like each rank); the single-process CLI itself is
``tests/test_lmms_cli.py``'s.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.subprocess_env import subprocess_env

pytestmark = pytest.mark.slow

TASKS = "icu_forget_vqa,icu_retain_qa_mc"
LIMIT = 9
LAUNCH = [
    str(Path(sys.executable).parent / "accelerate-launch"),
    "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
    "--dynamo_backend", "no",
]  # fmt: skip
#: Relative tolerance of a loglikelihood between the two runs: a shard batches other docs together, so the
#: right-padded batch shapes (and float summation order) differ; the values are sums of ~10 token log-probs.
LL_RTOL = 1e-5


MODEL_ARGS = "pretrained={},batch_size=4,device=cpu"


def _lmms_eval(tiny_model_dir: Path, out: Path) -> list[str]:
    return [
        "-m", "lmms_eval", "--tasks", TASKS, "--model", "icu_hf",
        "--model_args", MODEL_ARGS.format(tiny_model_dir),
        "--limit", str(LIMIT), "--log_samples", "--output_path", str(out), "--verbosity", "INFO",
    ]  # fmt: skip


def _samples(out: Path) -> dict[str, dict[int, dict]]:
    files = list(out.rglob("*_samples_*.jsonl"))
    assert len(files) == 2, files
    by_task = {}
    for f in files:
        task = f.name.split("_samples_", 1)[1].removesuffix(".jsonl")
        by_task[task] = {r["doc_id"]: r for r in map(json.loads, f.read_text().splitlines())}
    return by_task


def _results(out: Path) -> dict:
    return json.loads(next(out.rglob("*_results.json")).read_text())["results"]


def test_two_processes_score_like_one(tiny_model_dir, small_data_dir, tmp_path):
    import torch

    from icu_unlearn.scoring.evaluate import score
    from icu_unlearn.scoring.icu_hf import IcuHF

    work = tmp_path / "work"
    env = subprocess_env(
        work, ICU_DATA_DIR=str(small_data_dir), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PET_STANDALONE="1"
    )
    one, two = tmp_path / "one", tmp_path / "two"
    proc = subprocess.run(
        [*LAUNCH, *_lmms_eval(tiny_model_dir, two)], env=env, cwd=work, capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "Running on rank 1" in proc.stdout + proc.stderr  # the launch really ran two ranks
    # The reference after the launch, not beside it: with the two at once, rank 1 once aborted after its last
    # step ("terminate called without an active exception"; lmms-eval creates a gloo group and never destroys
    # it), probably a teardown race that the extra load made visible.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        lm = IcuHF(pretrained=str(tiny_model_dir), batch_size=4, device="cpu")
        score(
            lm, MODEL_ARGS.format(tiny_model_dir), TASKS.split(","), one, data_dir=small_data_dir, limit=LIMIT
        )
    finally:
        torch.set_num_threads(threads)

    a, b = _samples(one), _samples(two)
    assert a.keys() == b.keys() == {"icu_forget_vqa", "icu_retain_qa_mc"}
    for task in a:
        assert sorted(a[task]) == sorted(b[task]) == list(range(LIMIT)), task  # each doc once
    gen_a, gen_b = a["icu_forget_vqa"], b["icu_forget_vqa"]
    assert len({r["contains"]["prediction"] for r in gen_a.values()}) > 1  # answers tell docs apart
    for i, rec in gen_a.items():
        assert (rec["target"], rec["input"]) == (gen_b[i]["target"], gen_b[i]["input"])
        assert rec["contains"] == gen_b[i]["contains"], i  # same answer, same scores
    for i, rec in a["icu_retain_qa_mc"].items():
        other = b["icu_retain_qa_mc"][i]
        lls_a = [ast.literal_eval(r)[0] for r in rec["filtered_resps"]]
        lls_b = [ast.literal_eval(r)[0] for r in other["filtered_resps"]]
        assert lls_a == pytest.approx(lls_b, rel=LL_RTOL), i
        assert rec["mc_accuracy"]["mc_accuracy"] == other["mc_accuracy"]["mc_accuracy"], i
    ra, rb = _results(one), _results(two)
    for task in ra:
        for key, value in ra[task].items():
            if isinstance(value, float):
                assert rb[task][key] == pytest.approx(value, abs=1e-12), (task, key)
