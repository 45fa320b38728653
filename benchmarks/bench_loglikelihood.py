"""Log-likelihood scoring throughput of ``icu_hf`` batched vs one request at a time, and vs lmms-eval's ``llava_hf``.

The requests are what the ``icu_ll`` tasks send: image + question → the gold answer and each of its three
distractors. The script times ``icu_hf`` at ``--batch-size`` and at batch 1 on the same requests (the values
must agree to 1e-4 per request), then tries lmms-eval 0.7.3's own ``llava_hf`` (batch 1) on them and prints its
throughput and the largest per-request difference, or exactly why it could not score.

What is compared with ``llava_hf``: ``icu_hf`` returns ``(sum of answer-token log-probs, is_greedy, n_tokens)``
for docs that ask for the count; ``llava_hf`` returns ``(loss, is_greedy)`` with ``loss`` the *mean* per-token
NLL of the continuation (its code: "we return the actual loss"), so ``-sum / n_tokens`` is compared with
``loss``.

Why ``llava_hf`` cannot score here (lmms-eval 0.7.3, transformers 5), measured by this script:
    * a request with an image fails: ``llava_hf`` tokenizes the prompt a second time *without* the image to
      find where the answer starts, and the processor refuses text holding an ``<image>`` token with no image
      ("ValueError: Found 1 <image> tokens in the text but no images were passed");
    * a request without an image fails too: it passes ``images=[]`` to the processor, whose empty
      ``pixel_values`` reach the vision tower ("ValueError: not enough values to unpack (expected 4, got 1)").
    Loading it needs two work-arounds, both in :func:`_llava_hf`: the module imports ``decord`` (a video
    reader, not installed) at import time, so an empty placeholder module is registered under that name (no
    video is read); its default ``device_map=""`` is refused by transformers 5, so ``"cpu"`` is passed. Its
    processor loads the slow (PIL) CLIP image processor the tiny model saves: no torchvision needed.

    .venv/bin/python benchmarks/bench_loglikelihood.py [--docs 16] [--batch-size 16] [--threads N]

By default a small data set is generated and the tiny model built in a temp dir; ``--model`` / ``--data``
measure your own LLaVA-architecture model. The last line is one JSON object (for ``benchmarks/run_all.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import types
from pathlib import Path

from bench_inputs import add_input_args, data_and_model

TOLERANCE = 1e-4


def _requests(data_dir: Path, n_docs: int, view: str = "vqa"):
    """(docs, requests): ``n_docs`` docs of ``view``, four loglikelihood requests each (one per choice)."""
    from lmms_eval.api.instance import Instance

    from icu_tasks.data.dataset import open_data
    from icu_tasks.harness.likelihood import TOKEN_COUNT_KEY
    from icu_tasks.harness.prompts import question_text

    data = open_data(data_dir)
    docs = data.rows(view=view)[:n_docs]
    for doc in docs:
        doc["_image"] = data.load_image(doc["image"]) if doc["image"] else None
        doc[TOKEN_COUNT_KEY] = True

    def doc_to_visual(doc):
        return [doc["_image"]] if doc["_image"] is not None else []

    requests = [
        Instance(
            request_type="loglikelihood",
            arguments=(question_text(doc), choice, doc_to_visual, i, "bench", "test"),
            idx=c,
            metadata={"task": "bench", "doc_id": i, "repeats": 1},
        )
        for i, doc in enumerate(docs)
        for c, choice in enumerate(doc["choices"])
    ]
    return docs, requests


def _llava_hf(model_dir: Path):
    """lmms-eval's ``llava_hf`` on CPU, float32 (see the module docstring for the two work-arounds)."""
    if "decord" not in sys.modules:
        placeholder = types.ModuleType("decord")
        placeholder.VideoReader = placeholder.cpu = None
        sys.modules["decord"] = placeholder
    from lmms_eval.models.simple.llava_hf import LlavaHf

    return LlavaHf(pretrained=str(model_dir), device="cpu", dtype="float32", device_map="cpu", batch_size=1)


def _timed(fn, requests) -> tuple[float, list]:
    start = time.perf_counter()
    out = fn(requests)
    return time.perf_counter() - start, out


def _try(lm, docs, requests) -> tuple[float, list] | str:
    """``_timed(lm.loglikelihood)`` or the one-line reason it failed."""
    lm.task_dict = {"bench": {"test": docs}}
    try:
        return _timed(lm.loglikelihood, requests)
    except Exception as err:  # noqa: BLE001 - the reason is the measurement
        return f"{type(err).__name__}: {str(err).splitlines()[0]}"


def _measure(args: argparse.Namespace, data_dir: Path, model_dir: Path) -> dict:
    from icu_unlearn.scoring.icu_hf import IcuHF

    docs, requests = _requests(data_dir, args.docs)
    ours = IcuHF(pretrained=str(model_dir), device="cpu", dtype="float32", allow_data_mismatch=True)
    ours.task_dict = {"bench": {"test": docs}}
    ours.batch_size_per_gpu = args.batch_size
    ours.loglikelihood(requests[: args.batch_size])  # warm-up
    t_batched, batched = _timed(ours.loglikelihood, requests)
    ours.batch_size_per_gpu = 1
    t_one, one = _timed(ours.loglikelihood, requests)
    out = {"n": len(requests), "t_batched": t_batched, "t_one": t_one}
    out["delta_batch"] = max(abs(a[0] - b[0]) for a, b in zip(batched, one, strict=True))
    theirs = _llava_hf(model_dir)
    llava = _try(theirs, docs, requests)
    if isinstance(llava, str):
        text_docs, text_requests = _requests(data_dir, 1, view="qa")
        out["llava_error"] = {"image": llava, "text-only": _try(theirs, text_docs, text_requests[:1])}
    else:
        t_llava, scores = llava
        ours_loss = [-ll / n for ll, _, n in batched]
        out["t_llava"] = t_llava
        out["delta_llava"] = max(abs(a - s[0]) for a, s in zip(ours_loss, scores, strict=True))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_input_args(parser)
    parser.add_argument("--docs", type=int, default=16, help="image+question docs (4 requests each)")
    parser.add_argument("--batch-size", type=int, default=16, help="icu_hf batch size")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="icu_bench_ll_") as tmp:
        m = _measure(args, *data_and_model(args.data, args.model, Path(tmp), profiles=24))
    n, b = m["n"], args.batch_size
    print(f"requests: {n} ({args.docs} image+question docs x 4 choices)")
    print(f"icu_hf batch {b}: {n / m['t_batched']:8.2f} requests/s ({m['t_batched']:.2f} s)")
    print(f"icu_hf batch 1:  {n / m['t_one']:8.2f} requests/s ({m['t_one']:.2f} s)")
    ratio_one = m["t_one"] / m["t_batched"]
    print(f"ratio batch {b} vs 1: {ratio_one:.2f}x; max |Δ loglikelihood| = {m['delta_batch']:.1e}")
    rows = [
        {
            "name": f"loglikelihood, icu_hf batch {b} vs batch 1",
            "measured": f"{ratio_one:.2f}x (max |Δ| {m['delta_batch']:.1e})",
            "target": f"> 1x, |Δ| < {TOLERANCE:g}",
            "pass": ratio_one > 1 and m["delta_batch"] < TOLERANCE,
        }
    ]
    summary = {
        "benchmark": "loglikelihood",
        "requests": n,
        "batch_size": b,
        "ratio_batch1": round(ratio_one, 2),
    }
    if "llava_error" in m:
        for kind, reason in m["llava_error"].items():
            print(f"llava_hf could not score a request ({kind}): {reason}")
        summary["llava_hf_error"] = m["llava_error"]
    else:
        ratio = m["t_llava"] / m["t_batched"]
        print(f"llava_hf batch 1: {n / m['t_llava']:8.2f} requests/s ({m['t_llava']:.2f} s)")
        print(f"ratio vs llava_hf: {ratio:.2f}x; max |Δ mean NLL| = {m['delta_llava']:.1e}")
        summary |= {"ratio_llava_hf": round(ratio, 2), "max_delta_llava_hf": m["delta_llava"]}
        rows.append(
            {
                "name": f"loglikelihood, icu_hf batch {b} vs llava_hf batch 1",
                "measured": f"{ratio:.2f}x (max |Δ| {m['delta_llava']:.1e})",
                "target": f"|Δ| < {TOLERANCE:g}",
                "pass": m["delta_llava"] < TOLERANCE,
            }
        )
    summary["rows"] = rows
    print(json.dumps(summary))  # last line: for benchmarks/run_all.py
    return 0 if all(r["pass"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
