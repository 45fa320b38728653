"""Run records: every JSON record of a run dir is written stamped with its ``format_version`` and read through
one function that refuses a version written by a newer icu-bench, in one line naming the file."""

from __future__ import annotations

import json

import pytest

from icu_tasks.errors import StageError
from icu_tasks.records.files import (
    FORMAT_KEY,
    FORMAT_VERSIONS,
    WRITER_KEY,
    RecordVersionError,
    icu_bench_version,
    read_record,
    write_record,
)
from icu_tasks.records.layout import REPORT_JSON, RUN_JSON, STAGE_JSON
from tests.cli_helpers import assert_one_error, run_cli


def test_write_stamps_the_version_and_read_returns_it(tmp_path):
    path = write_record(tmp_path / RUN_JSON, {"method": "ga", FORMAT_KEY: 99})
    on_disk = json.loads(path.read_text())
    stamp = {FORMAT_KEY: FORMAT_VERSIONS[RUN_JSON], WRITER_KEY: icu_bench_version()}
    assert on_disk == stamp | {"method": "ga"}
    assert read_record(path) == on_disk
    assert not list(tmp_path.glob(".tmp-*")), "the atomic writer left a temp file"


def test_absent_unversioned_and_newer_records(tmp_path):
    assert read_record(tmp_path / STAGE_JSON) == {}
    with pytest.raises(StageError, match="not found"):
        read_record(tmp_path / STAGE_JSON, required=True)
    (tmp_path / STAGE_JSON).write_text('{"stage": 1}')  # the first format carried no version
    assert read_record(tmp_path / STAGE_JSON) == {"stage": 1}
    newer = FORMAT_VERSIONS[REPORT_JSON] + 1
    (tmp_path / REPORT_JSON).write_text(json.dumps({FORMAT_KEY: newer, "runs": []}))
    with pytest.raises(
        RecordVersionError, match=rf"report\.json has format_version {newer}; this icu-bench reads"
    ):
        read_record(tmp_path / REPORT_JSON)
    (tmp_path / RUN_JSON).write_text("[1, 2]")
    with pytest.raises(StageError, match="not a JSON object"):
        read_record(tmp_path / RUN_JSON)
    with pytest.raises(ValueError, match="not a run record"):
        read_record(tmp_path / "other.json")


@pytest.mark.subprocess
def test_report_refuses_a_run_from_a_newer_icu_bench(tmp_path):
    """``icu-bench report`` on a run dir whose run.json has an unknown version: one error line, exit 2."""
    run = tmp_path / "run"
    (run / "eval" / "stage_0").mkdir(parents=True)
    (run / RUN_JSON).write_text(json.dumps({FORMAT_KEY: 7, "method": "ga"}))
    proc = run_cli(["report", str(run), "--out", str(tmp_path / "out")], cwd=tmp_path)
    assert_one_error(proc, "run.json has format_version 7")
    assert not (tmp_path / "out").exists()
