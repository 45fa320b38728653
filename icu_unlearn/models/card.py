"""The ``README.md`` model card of a stage dir (replaces PEFT's placeholder card)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def stage_card(record: dict[str, Any], final: Path) -> str:
    """A model card from a stage's ``stage.json`` record; ``final`` is the stage dir it will be renamed to."""
    masks = record.get("masks") or {}
    lines = _header(record)
    if masks:
        lines += [
            "",
            f"`masks.safetensors` holds {masks.get('pruned_total')} pruned output channels (cumulative): they are "
            "applied as forward hooks on top of the adapter, so loading the adapter alone is not this stage.",
        ]
    return "\n".join(lines + _usage(record, Path(final).resolve()))


def _header(record: dict[str, Any]) -> list[str]:
    """The card's front matter, what the stage is, and its identity table."""
    k = record.get("stage")
    tasks = ", ".join(str(t) for t in record.get("forget_tasks") or []) or "none"
    parent = record.get("parent") or {}
    adapter = record.get("adapter") or {}
    base = record.get("base_model", "BASE")
    return [
        "---",
        "library_name: peft",
        "tags: [icu-bench, machine-unlearning, lora]",
        "---",
        "",
        f"# ICU-Bench unlearning stage {k} ({record.get('method')})",
        "",
        f"A PEFT {adapter.get('type') or 'LORA'} adapter (not merged) that unlearns forget task(s) {tasks} of the ICU-Bench data set with "
        f"the method `{record.get('method')}`, continuing "
        + (f"stage {parent.get('stage')}'s adapter." if parent else "from the vanilla model (stage 0)."),
        "All people in the data are fictional.",
        "",
        "| | |",
        "|---|---|",
        f"| stage | {k} |",
        f"| method | `{record.get('method')}` |",
        f"| forget tasks | {tasks} |",
        f"| base model (at creation) | `{base}` |",
        f"| base model id (sha256 of config + weights) | `{record.get('base_model_id')}` |",
        f"| data hash | `{record.get('data_hash')}` |",
        f"| data dir (at creation) | `{record.get('data_dir')}` |",
        f"| stage id (sha256 of adapter + masks) | `{record.get('stage_id')}` |",
        *([f"| parent stage id | `{parent.get('stage_id')}` |"] if parent else []),
        f"| adapter | {adapter.get('type') or 'LORA'}, r={adapter.get('r')}, alpha={adapter.get('lora_alpha')} |",
        f"| seed | {record.get('seed')} |",
        "",
        "Every hyper-parameter, the loss log, package versions and what changed are in `stage.json`.",
    ]


def _usage(record: dict[str, Any], final: Path) -> list[str]:
    """How to load the stage with PEFT and score it with lmms-eval."""
    base = record.get("base_model", "BASE")
    return [
        "",
        "## Load with PEFT",
        "",
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForImageTextToText, AutoProcessor",
        "",
        f'base = AutoModelForImageTextToText.from_pretrained("{base}")',
        f'model = PeftModel.from_pretrained(base, "{final}")  # masks: icu_unlearn.models.load_stage',
        f'processor = AutoProcessor.from_pretrained("{base}")',
        "```",
        "",
        "or with masks applied: `icu_unlearn.models.load_stage(load_base(BASE)[0], STAGE_DIR)`.",
        "",
        "## Score with lmms-eval",
        "",
        "```bash",
        "export ICU_DATA_DIR=" + str(record.get("data_dir") or "DATA"),
        'lmms-eval --include_path "$(icu-bench tasks-path)" --tasks icu --model icu_hf \\',
        f"  --model_args pretrained={base},adapter={final} --output_path EVAL_DIR --log_samples",
        "```",
        "",
        "`icu_hf` refuses, before loading anything, a base model whose content differs from the base model id "
        "above and a data dir whose data hash differs from the one above (the model_arg "
        "`allow_data_mismatch=true` accepts other data on purpose). Copied or moved dirs keep their identity.",
        "",
    ]
