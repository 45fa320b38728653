"""Prompt snapshots: the exact user text of a row, and which image (if any) a doc is shown."""

from __future__ import annotations

import pytest
from PIL import Image

from icu_tasks.data.schema import QUESTIONS
from icu_tasks.errors import DataError
from icu_tasks.harness import hooks
from icu_tasks.harness.prompts import question_text

VQA_ROW = {
    "id": "med-0003-diagnosis-vqa",
    "field": "diagnosis",
    "view": "vqa",
    "question": "What diagnosis did the patient in this document receive?",
    "answer": "Acute bronchitis",
    "image": "images/med-0003_mask_diagnosis.png",
}
QA_ROW = {
    "id": "lab-0011-salary-qa",
    "field": "salary",
    "view": "qa",
    "question": "  What is the annual salary of Ana Lima?\n",
    "answer": "$52,000",
    "image": None,
}


def test_question_text_snapshots():
    assert question_text(VQA_ROW) == (
        "What diagnosis did the patient in this document receive?\n"
        "Answer the question using a single word or phrase."
    )
    # Surrounding whitespace of the stored question is stripped; no image token, no chat formatting.
    assert question_text(QA_ROW) == (
        "What is the annual salary of Ana Lima?\nAnswer the question using a single word or phrase."
    )


def test_doc_to_text_is_question_text():
    assert hooks.doc_to_text(VQA_ROW) == question_text(VQA_ROW)
    assert hooks.doc_to_text(QA_ROW, {"pre_prompt": "ignored"}) == question_text(QA_ROW)


@pytest.mark.parametrize("question", [None, "", "   "])
def test_question_text_rejects_rows_without_a_question(question):
    with pytest.raises(DataError, match="med-0003-diagnosis-vqa"):
        question_text({**VQA_ROW, "question": question})


def test_text_only_doc_gets_no_image():
    assert hooks.doc_to_visual(QA_ROW) == []


def test_docs_get_the_masked_view_of_their_field(small_data_dir, monkeypatch):
    """Each VQA doc is shown exactly its row's image: the document view with the asked field masked, as RGB."""
    monkeypatch.setenv("ICU_DATA_DIR", str(small_data_dir))
    docs = hooks.forget_vqa_docs()
    masked_field = {key: field for domain in QUESTIONS for key, field in QUESTIONS[domain]}
    for doc in docs:
        # Snapshot of the generator's layout: images/<profile>/masked_<field>.png, where labor's
        # contract_start and contract_end questions share the masked contract_dates view.
        assert doc["image"] == f"images/{doc['profile_id']}/masked_{masked_field[doc['field']]}.png"
    shown = {}
    for doc in docs.select(range(0, len(docs), max(1, len(docs) // 12))):
        (image,) = hooks.doc_to_visual(doc)
        assert image.mode == "RGB"
        with Image.open(small_data_dir / doc["image"]) as expected:
            assert image.tobytes() == expected.convert("RGB").tobytes()
        shown[doc["image"]] = image.tobytes()
    assert len(set(shown.values())) == len(shown) > 1  # different masked views really differ
    for doc in hooks.forget_qa_docs():
        assert doc["image"] is None
        assert hooks.doc_to_visual(doc) == []
