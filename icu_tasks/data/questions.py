"""Question templates and multiple-choice options for the per-profile QA rows.

The VQA view asks about "the patient/employee in this document" (the image identifies the person); the QA view
names the person. The name question cannot name the person, so its QA view identifies them by ID number.
Every row gets 4 choices: the answer and 3 distractors of the same question key from other profiles, in a
deterministic order derived from (seed, row id).

The *paraphrase* phrasing (:data:`PARAPHRASE_TEMPLATES`) asks every question a second way with other words.
It is never trained: its rows (:func:`paraphrase_rows`) go to their own file, outside the core rows, so a
score on them measures whether knowing (or forgetting) a fact carries over to a question the model has not
seen in that form.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable

from icu_tasks.data import schema
from icu_tasks.data.profiles import Profile, extra_values

#: Per question key: a template with ``{who}`` (the person) used by both views.
TEMPLATES: dict[str, str] = {
    "date_of_birth": "What is the date of birth of {who}?",
    "id_number": "What is the ID number of {who}?",
    "address": "What is the home address of {who}?",
    "diagnosis": "What diagnosis did {who} receive?",
    "medication": "Which medication was prescribed to {who}?",
    "attending_doctor": "Who is the attending physician of {who}?",
    "hospital": "At which hospital is {who} treated?",
    "employer": "Which company employs {who}?",
    "salary": "What is the annual salary of {who}?",
    "position": "What position does {who} hold?",
    "contract_start": "On what date does the employment contract of {who} start?",
    "contract_end": "On what date does the employment contract of {who} end?",
}
#: The name questions: the VQA view points at the document, the QA view identifies the person by ID number.
NAME_TEMPLATES: dict[str, tuple[str, str]] = {
    "patient_name": (
        "What is the name of the patient in this document?",
        "What is the name of the patient with ID number {id_number}?",
    ),
    "employee_name": (
        "What is the name of the employee in this document?",
        "What is the name of the employee with ID number {id_number}?",
    ),
}
WHO_IN_IMAGE = {"medical": "the patient in this document", "labor": "the employee in this document"}

#: The held-out phrasing of every question (same ``{who}`` / ``{id_number}`` slots; never trained).
PARAPHRASE_TEMPLATES: dict[str, str] = {
    "date_of_birth": "When was {who} born?",
    "id_number": "Which ID number belongs to {who}?",
    "address": "Where does {who} live?",
    "diagnosis": "What was {who} diagnosed with?",
    "medication": "Which drug was {who} given?",
    "attending_doctor": "Which doctor is in charge of {who}?",
    "hospital": "Which hospital treats {who}?",
    "employer": "Who is the employer of {who}?",
    "salary": "How much does {who} earn per year?",
    "position": "What is the job title of {who}?",
    "contract_start": "When does the employment of {who} begin under the contract?",
    "contract_end": "When does the employment of {who} come to an end under the contract?",
}
PARAPHRASE_NAME_TEMPLATES: dict[str, tuple[str, str]] = {
    "patient_name": (
        "Who is the patient this document is about?",
        "Who is the patient whose ID number is {id_number}?",
    ),
    "employee_name": (
        "Who is the employee this document is about?",
        "Who is the employee whose ID number is {id_number}?",
    ),
}
PARAPHRASE_WHO_IN_IMAGE = {
    "medical": "the patient this document is about",
    "labor": "the employee this document is about",
}


def question(profile: Profile, key: str, view: str, phrasing: str = "core") -> str:
    """The question text of ``key`` about ``profile`` in ``view`` (``vqa`` or ``qa``).

    ``phrasing`` is ``core`` (the trained and scored wording) or ``paraphrase`` (the held-out wording).
    """
    if view not in schema.VIEWS:
        raise ValueError(f"unknown view {view!r}")
    if phrasing not in ("core", schema.PARAPHRASE):
        raise ValueError(f"unknown phrasing {phrasing!r}")
    para = phrasing == schema.PARAPHRASE
    if key in NAME_TEMPLATES:
        vqa, qa = (PARAPHRASE_NAME_TEMPLATES if para else NAME_TEMPLATES)[key]
        return vqa if view == "vqa" else qa.format(id_number=profile.fields["id_number"])
    who = (
        (PARAPHRASE_WHO_IN_IMAGE if para else WHO_IN_IMAGE)[profile.domain] if view == "vqa" else profile.name
    )
    return (PARAPHRASE_TEMPLATES if para else TEMPLATES)[key].format(who=who)


def row_rng(seed: int, row_id: str) -> random.Random:
    """A ``random.Random`` that depends only on (seed, row id), never on iteration order or hash salt."""
    digest = hashlib.sha256(f"{seed}|{row_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def choices_for(answer: str, pool: list[str], rng: random.Random) -> list[str]:
    """The answer plus 3 distinct distractors from ``pool`` (sorted, distinct, >= 4 values), shuffled."""
    picked = [v for v in rng.sample(pool, schema.N_CHOICES) if v != answer][: schema.N_CHOICES - 1]
    options = [answer, *picked]
    rng.shuffle(options)
    return options


class ChoicePools:
    """Sorted distinct values per (domain, question key), topped up so each has at least 4 values."""

    def __init__(self, profiles: Iterable[Profile], seed: int) -> None:
        values: dict[tuple[str, str], set[str]] = {}
        for p in profiles:
            for key, answer in p.answers.items():
                values.setdefault((p.domain, key), set()).add(answer)
        self.pools: dict[tuple[str, str], list[str]] = {}
        for (domain, key), vals in values.items():
            extra_seed = seed + 1_000_003
            while len(vals) < schema.N_CHOICES:
                vals.update(extra_values(key, domain, schema.N_CHOICES, extra_seed))
                extra_seed += 1
            self.pools[(domain, key)] = sorted(vals)

    def __getitem__(self, item: tuple[str, str]) -> list[str]:
        return self.pools[item]


def row_id(profile_id: str, key: str, view: str) -> str:
    """``med-0001-diagnosis-vqa``."""
    return f"{profile_id}-{key}-{view}"


def profile_rows(
    profile: Profile,
    *,
    split: str,
    forget_task: int,
    image_of_field: dict[str, str],
    pools: ChoicePools,
    seed: int,
) -> list[dict]:
    """The QA rows of one profile: every question key in the VQA then the QA view.

    ``image_of_field`` maps a field to the relative path of its masked view; a VQA row about field f shows
    that image, so the model must remember the value rather than read it.
    """
    rows = []
    for view in schema.VIEWS:
        for key, field_name in schema.QUESTIONS[profile.domain]:
            rid = row_id(profile.profile_id, key, view)
            answer = profile.answers[key]
            rows.append(
                {
                    "id": rid,
                    "profile_id": profile.profile_id,
                    "domain": profile.domain,
                    "field": key,
                    "view": view,
                    "question": question(profile, key, view),
                    "answer": answer,
                    "choices": choices_for(answer, pools[(profile.domain, key)], row_rng(seed, rid)),
                    "image": image_of_field[field_name] if view in schema.IMAGE_VIEWS else None,
                    "forget_task": forget_task,
                    "split": split,
                }
            )
    return rows


def paraphrase_rows(profile: Profile, core_rows: list[dict]) -> list[dict]:
    """The paraphrase rows of one profile: one per core row (from :func:`profile_rows`), same order.

    Each copies its core row (answer, choices, image, split, forget task) with the held-out question, the
    id ``<core id>-para``, ``phrasing`` = ``paraphrase`` and ``core_id`` = the core row's id.
    """
    return [
        {
            **row,
            "id": f"{row['id']}-para",
            "question": question(profile, row["field"], row["view"], schema.PARAPHRASE),
            "phrasing": schema.PARAPHRASE,
            "core_id": row["id"],
        }
        for row in core_rows
    ]
