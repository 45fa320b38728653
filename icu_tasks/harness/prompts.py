"""The exact user text of a QA row: one function shared by evaluation (lmms-eval hooks) and training.

What is trained must be exactly what is scored, so the fine-tune / unlearning code and the lmms-eval tasks
both call :func:`question_text`. It returns plain text only: no image token and no chat formatting (the
model side wraps it with the processor's chat template and puts the image, if any, in the user turn).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from icu_tasks.errors import DataError

#: Appended to every question; the short-answer instruction LLaVA-1.5 was trained with.
ANSWER_INSTRUCTION = "Answer the question using a single word or phrase."
#: Appended instead to a long-form row (``phrasing`` ``longform``: "Summarise the record of <name>.").
LONGFORM_INSTRUCTION = "Answer in one or two sentences."


def question_text(row: Mapping[str, Any]) -> str:
    """The user text for a QA row: its question, a newline, and :data:`ANSWER_INSTRUCTION`.

    >>> question_text({"question": "What is the diagnosis of the person in this document?"})
    'What is the diagnosis of the person in this document?\\nAnswer the question using a single word or phrase.'

    The same text is used for the VQA and the text-only view (the questions themselves differ: VQA asks
    about "the person in this document", QA names the person). A long-form row gets
    :data:`LONGFORM_INSTRUCTION` instead of the short-answer one. Raises :class:`DataError` if the row has
    no question.
    """
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"QA row {row.get('id', '?')!r} has no question text")
    instruction = LONGFORM_INSTRUCTION if row.get("phrasing") == "longform" else ANSWER_INSTRUCTION
    return f"{question.strip()}\n{instruction}"
