"""The method defaults are the picks of docs/calibration.md, and every method config cites that note (fast).

The note's "Defaults set" table is parsed by hand here (one row per method: the settings the calibration set,
as ``key=value``); each must equal the config dataclass's default, so a default changed without rerunning
the protocol (or a note edited without changing the code) fails.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from icu_unlearn.methods import get_method, list_methods

NOTE = Path(__file__).resolve().parents[1] / "docs" / "calibration.md"
ROW = re.compile(r"^\| `(\w+)` \| `([^`]+)` \|")


def _documented_defaults() -> dict[str, dict[str, str]]:
    text = NOTE.read_text(encoding="utf-8")
    section = text.split("## Defaults set", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = ROW.match(line)
        if match:
            rows[match.group(1)] = dict(kv.split("=", 1) for kv in match.group(2).split())
    return rows


def test_the_note_sets_every_method():
    assert sorted(_documented_defaults()) == list_methods()


@pytest.mark.parametrize("name", list_methods())
def test_config_defaults_are_the_documented_picks(name):
    config_class = get_method(name).config_class
    documented = _documented_defaults()[name]
    defaults = config_class().to_dict()
    # the text values go through the config's own conversion (e.g. "2e-3" -> 0.002), then must be the defaults
    expected = config_class.from_dict(documented).to_dict()
    assert {k: defaults[k] for k in documented} == {k: expected[k] for k in documented}


@pytest.mark.parametrize("name", list_methods())
def test_config_docstring_cites_the_note(name):
    doc = " ".join((get_method(name).config_class.__doc__ or "").split())
    assert "docs/calibration.md" in doc
