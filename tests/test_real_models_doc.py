"""docs/real_models.md: the commands of its "Checked here on the tiny models" block run as written on the tiny
Qwen2-VL, and on the tiny LLaVA with ``qwen2vl`` read as ``llava`` (random weights, CPU, a few bfloat16 LoRA
steps), with the doc's paths mapped onto the test's small data set."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.cli_helpers import call_cli

DOC = Path(__file__).resolve().parent.parent / "docs" / "real_models.md"


def doc_commands() -> list[list[str]]:
    """The ``icu-bench`` commands of the doc's last bash block, each as an argument list (``\\`` joined)."""
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    text = blocks[-1].replace("\\\n", " ")
    return [shlex.split(line)[1:] for line in text.splitlines() if line.startswith("icu-bench ")]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["qwen2vl", "llava"])
def test_the_docs_tiny_sequence_runs(arch: str, small_data_dir: Path, tmp_path: Path) -> None:
    import json

    commands = doc_commands()
    assert [c[0] for c in commands] == ["model", "finetune", "run"]
    for args in commands:
        args = [str(small_data_dir) if a == "data/small" else a.replace("qwen2vl", arch) for a in args]
        proc = call_cli(args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "models" / f"tiny-{arch}-vanilla" / "finetune.json").read_text())
    assert record["dtype"] == "bfloat16" and record["config"]["mode"] == "lora"
    assert "estimated wall time:" in proc.stdout and not (tmp_path / "runs").exists()  # a dry run
