"""Question texts, multiple-choice options and the utility split."""

from __future__ import annotations

from collections import Counter

import pyarrow.parquet as pq
import pytest

from icu_tasks.data import schema, utility
from icu_tasks.data.profiles import make_profiles
from icu_tasks.data.questions import ChoicePools, choices_for, question, row_rng
from tests.fixtures_data import SMALL_PROFILES


@pytest.fixture(scope="module")
def rows(small_data_dir):
    return pq.read_table(small_data_dir / schema.QA_FILE).to_pylist()


def test_vqa_points_at_the_document_and_qa_names_the_person(rows):
    by_id = {r["id"]: r for r in rows}
    for r in rows:
        if r["split"] == "utility" or r["view"] != "vqa":
            continue
        qa = by_id[r["id"].removesuffix("-vqa") + "-qa"]
        name_key = schema.FIELDS[r["domain"]][0]
        name = by_id[f"{r['profile_id']}-{name_key}-qa"]["answer"]
        id_number = by_id[f"{r['profile_id']}-id_number-qa"]["answer"]
        assert "in this document" in r["question"] and name not in r["question"]
        if r["field"] == name_key:  # the QA view cannot name the person it asks the name of
            assert id_number in qa["question"] and name not in qa["question"]
        else:
            assert name in qa["question"] and "document" not in qa["question"]
        assert qa["answer"] == r["answer"] and qa["image"] is None


def test_choices_hold_the_answer_and_three_same_field_distractors(rows):
    values = {}
    for r in rows:
        values.setdefault((r["domain"], r["field"]), set()).add(r["answer"])
    for r in rows:
        assert len(r["choices"]) == len(set(r["choices"])) == schema.N_CHOICES
        assert r["answer"] in r["choices"]
        if r["split"] != "utility" and r["field"] in ("patient_name", "employee_name", "id_number"):
            assert set(r["choices"]) <= values[(r["domain"], r["field"])]  # from other profiles
    # The answer's position is spread over the four slots, not always first.
    positions = Counter(r["choices"].index(r["answer"]) for r in rows)
    assert set(positions) == {0, 1, 2, 3}


def test_choices_are_deterministic_per_row():
    pool = sorted(f"v{i}" for i in range(10))
    a = choices_for("v3", pool, row_rng(0, "row-1"))
    assert a == choices_for("v3", pool, row_rng(0, "row-1"))
    assert "v3" in a and len(set(a)) == 4


def test_tiny_pools_are_topped_up():
    """With 2 profiles per domain a field has only 2 real values; fresh values fill the 4 choices."""
    people = make_profiles(2, seed=0)
    pools = ChoicePools(people, seed=0)
    for p in people:
        for key, answer in p.answers.items():
            assert len(pools[(p.domain, key)]) >= 4
            assert answer in choices_for(answer, pools[(p.domain, key)], row_rng(0, key))


def test_question_rejects_unknown_view():
    (p,) = make_profiles(1, seed=0)[:1]
    with pytest.raises(ValueError, match="unknown view"):
        question(p, "diagnosis", "audio")


def test_utility_split(rows, small_data_dir):
    util = [r for r in rows if r["split"] == "utility"]
    # 18 profiles: one specimen document per domain (one per 100 profiles, at least one)
    specimens = len(schema.DOMAINS)
    assert len(util) == specimens * len(utility.SPECIMEN_QUESTIONS) + utility.N_FACT_ROWS
    assert len(util) == utility.utility_rows_count(SMALL_PROFILES)
    assert {r["forget_task"] for r in util} == {0}
    vqa = [r for r in util if r["view"] == "vqa"]
    assert len({r["profile_id"] for r in vqa}) == specimens
    assert {r["field"] for r in vqa} == set(utility.SPECIMEN_QUESTIONS)
    for r in vqa:  # held-out specimen documents: not a profile of any other split
        assert r["profile_id"].startswith("spec-") and (small_data_dir / r["image"]).is_file()
    profile_ids = {r["profile_id"] for r in rows if r["split"] != "utility"}
    assert not profile_ids & {r["profile_id"] for r in util}
    facts = [r for r in util if r["view"] == "qa"]
    assert len(facts) == utility.N_FACT_ROWS
    northbrook = next(
        r for r in facts if r["question"] == "In which city is Northbrook General Hospital located?"
    )
    assert northbrook["answer"] == "Marrowby"


def test_paraphrase_asks_every_question_in_other_words():
    """Every question key has a held-out phrasing that differs from the trained one in both views and keeps
    the same way of identifying the person (the document in VQA, the name / ID number in QA)."""
    from icu_tasks.data.questions import PARAPHRASE_NAME_TEMPLATES, PARAPHRASE_TEMPLATES

    people = make_profiles(2, seed=0)
    keys = {k for d in schema.DOMAINS for k, _ in schema.QUESTIONS[d]}
    assert keys == set(PARAPHRASE_TEMPLATES) | set(PARAPHRASE_NAME_TEMPLATES)
    for p in people:
        for key, _ in schema.QUESTIONS[p.domain]:
            for view in schema.VIEWS:
                core, para = question(p, key, view), question(p, key, view, "paraphrase")
                assert para != core and para.endswith("?"), (key, view)
                if view == "vqa":
                    assert "this document" in para and p.name not in para
                elif key in PARAPHRASE_NAME_TEMPLATES:
                    assert p.fields["id_number"] in para and p.name not in para
                else:
                    assert p.name in para
    with pytest.raises(ValueError, match="unknown phrasing"):
        question(people[0], "address", "qa", "slang")
