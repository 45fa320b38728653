"""The ICU-Bench data contract: domains, sensitive fields, question keys, splits, file names, QA columns.

Everything that reads or writes benchmark data (generator, loader, lmms-eval hooks, training data) takes
these names from here, so the contract lives in one place. No torch import.
"""

from __future__ import annotations

import pyarrow as pa

DOMAINS: tuple[str, ...] = ("medical", "labor")

#: Sensitive fields per domain; each one gets its own masked document view.
FIELDS: dict[str, tuple[str, ...]] = {
    "medical": (
        "patient_name",
        "date_of_birth",
        "id_number",
        "address",
        "diagnosis",
        "medication",
        "attending_doctor",
        "hospital",
    ),
    "labor": (
        "employee_name",
        "id_number",
        "address",
        "employer",
        "salary",
        "position",
        "contract_dates",
    ),
}

#: The 8 questions asked about every profile, as (question key, the field whose masked view a VQA row shows).
#: Labor's ``contract_dates`` field carries two questions (start and end date), so both domains have 8.
QUESTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "medical": tuple((f, f) for f in FIELDS["medical"]),
    "labor": (
        ("employee_name", "employee_name"),
        ("id_number", "id_number"),
        ("address", "address"),
        ("employer", "employer"),
        ("salary", "salary"),
        ("position", "position"),
        ("contract_start", "contract_dates"),
        ("contract_end", "contract_dates"),
    ),
}

#: How a question reaches the model: ``vqa`` shows the document (the asked field masked) and asks about "the
#: person in this document"; ``qa`` names the person in text only.
VIEWS: tuple[str, ...] = ("vqa", "qa")
#: The views whose rows carry an image (every other view's rows have none).
IMAGE_VIEWS: frozenset[str] = frozenset({"vqa"})
#: ``forget`` rows have ``forget_task`` >= 1; every other split has ``forget_task`` == 0.
SPLITS: tuple[str, ...] = ("forget", "retain_train", "retain_eval", "holdout", "utility")
#: Profiles the vanilla model never sees: its accuracy on them is the base rate B[0] of a model that never
#: knew the person (and they are the non-members of a membership-inference test). Never trained, never
#: part of a stopping rule.
HOLDOUT = "holdout"
#: The splits the vanilla model is fine-tuned on and must know (every split except ``holdout``).
KNOWN_SPLITS: tuple[str, ...] = tuple(s for s in SPLITS if s != HOLDOUT)
#: How the retain profiles of each domain are divided, in tenths (largest-remainder rounding; see
#: ``icu_tasks.data.plan.retain_split_sizes``): 40 % retain_train, 30 % retain_eval, 30 % holdout.
RETAIN_SHARES: tuple[tuple[str, int], ...] = (("retain_train", 4), ("retain_eval", 3), (HOLDOUT, 3))
N_CHOICES = 4
FULL_LAYOUTS = 2

# File names inside a data dir.
QA_FILE = "qa.parquet"
#: The paraphrase view: one held-out rephrasing of every profile question, outside the core rows.
PARAPHRASE_FILE = "qa_paraphrase.parquet"
#: The long-form view: one "Summarise the record of <name>." row per profile, outside the core rows.
LONGFORM_FILE = "qa_longform.parquet"
PROFILES_FILE = "profiles.parquet"
MANIFEST_FILE = "manifest.json"
IMAGES_DIR = "images"

#: Columns of ``qa.parquet``; ``image`` is a path relative to the data dir (null for the text-only view).
QA_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("profile_id", pa.string()),
        ("domain", pa.string()),
        ("field", pa.string()),
        ("view", pa.string()),
        ("question", pa.string()),
        ("answer", pa.string()),
        ("choices", pa.list_(pa.string())),
        ("image", pa.string()),
        ("forget_task", pa.int32()),
        ("split", pa.string()),
    ]
)

#: ``phrasing`` value of every row of :data:`PARAPHRASE_FILE`.
PARAPHRASE = "paraphrase"
#: Columns of the paraphrase file: the QA columns plus ``phrasing`` and ``core_id`` (the ``id`` of the
#: ``qa.parquet`` row it rephrases; same profile, field, view, answer, choices and image).
PARAPHRASE_SCHEMA = pa.schema([*QA_SCHEMA, ("phrasing", pa.string()), ("core_id", pa.string())])

#: ``phrasing`` and ``field`` value of every row of :data:`LONGFORM_FILE`.
LONGFORM = "longform"
#: Columns of the long-form file: the QA columns (``field`` = ``view``-independent ``longform``, ``view`` =
#: ``qa``, no image, no choices) plus ``phrasing`` (``longform``), ``template`` (which summary wording the
#: answer uses) and ``values`` (the profile's private values, one per question key in ``QUESTIONS`` order:
#: what a leakage score looks for in a generation).
LONGFORM_SCHEMA = pa.schema(
    [*QA_SCHEMA, ("phrasing", pa.string()), ("template", pa.int32()), ("values", pa.list_(pa.string()))]
)


def images_per_profile(domain: str) -> int:
    """Document images of one profile: the full layouts plus one masked view per sensitive field."""
    return FULL_LAYOUTS + len(FIELDS[domain])


def qa_per_profile(domain: str) -> int:
    """QA rows of one profile: every question in both views."""
    return len(QUESTIONS[domain]) * len(VIEWS)
