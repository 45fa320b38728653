"""The utility split: knowledge the model must keep that is not about private people (docs/data.md).

Two kinds of rows, all with ``split == "utility"`` and ``forget_task == 0``:

* **document reading (VQA)**: held-out *specimen* documents (fictional people who are in no forget or retain
  set, stamped "SPECIMEN") with questions answered by a visible, non-private part of the image: the document
  type and the issuing institution;
* **public facts (QA)**: text questions about the fictional hospitals and companies (city, founding year,
  industry) that appear on every document.

The split is small and deterministic: :func:`n_specimens_per_domain` specimens per domain, 2 questions each,
plus :data:`N_FACT_ROWS` fact rows.
"""

from __future__ import annotations

from icu_tasks.data import schema
from icu_tasks.data.profiles import COMPANIES, HOSPITALS, Profile
from icu_tasks.data.questions import choices_for, row_rng
from icu_tasks.data.render import INSTITUTION_FIELD

DOC_TYPES: tuple[str, ...] = (
    "Medical report",
    "Employment contract",
    "Insurance claim",
    "Lab result",
    "Invoice",
)
DOC_TYPE = {"medical": "Medical report", "labor": "Employment contract"}
SPECIMEN_QUESTIONS: dict[str, str] = {
    "doc_type": "What type of document is this?",
    "institution": "Which institution issued this document?",
}
HOSPITAL_FACTS: dict[str, str] = {
    "city": "In which city is {name} located?",
    "founded": "In what year was {name} founded?",
}
COMPANY_FACTS: dict[str, str] = {
    "industry": "In which industry does {name} operate?",
    "city": "In which city is {name} headquartered?",
}
N_FACT_ROWS = len(HOSPITALS) * len(HOSPITAL_FACTS) + len(COMPANIES) * len(COMPANY_FACTS)
#: Layout of a specimen document: alternates so both layouts appear.
SPECIMEN_IMAGE_DIR = "utility"


def n_specimens_per_domain(profiles: int) -> int:
    """Specimen documents per domain: 1 per 100 profiles, at least 1 (10 at full scale)."""
    return max(1, profiles // 100)


def utility_rows_count(profiles: int) -> int:
    """Number of utility QA rows at a given scale."""
    return n_specimens_per_domain(profiles) * len(schema.DOMAINS) * len(SPECIMEN_QUESTIONS) + N_FACT_ROWS


def specimen_image(specimen: Profile) -> str:
    """Relative path of a specimen's document image."""
    return f"{schema.IMAGES_DIR}/{SPECIMEN_IMAGE_DIR}/{specimen.profile_id}.png"


def specimen_layout(specimen: Profile) -> int:
    """Layout of the specimen's document (alternates with the specimen number)."""
    return int(specimen.profile_id.rsplit("-", 1)[1]) % schema.FULL_LAYOUTS


def _row(rid: str, pid: str, domain: str, key: str, view: str, q: str, answer: str, pool, image, seed):
    return {
        "id": rid,
        "profile_id": pid,
        "domain": domain,
        "field": key,
        "view": view,
        "question": q,
        "answer": answer,
        "choices": choices_for(answer, sorted(set(pool)), row_rng(seed, rid)),
        "image": image,
        "forget_task": 0,
        "split": "utility",
    }


def utility_rows(specimens: list[Profile], seed: int) -> list[dict]:
    """All utility rows: specimen VQA rows (in specimen order) then public-fact QA rows (fixed order)."""
    rows = []
    institutions = {
        "medical": [h["name"] for h in HOSPITALS],
        "labor": [c["name"] for c in COMPANIES],
    }
    for spec in specimens:
        d = spec.domain
        answers = {"doc_type": DOC_TYPE[d], "institution": spec.fields[INSTITUTION_FIELD[d]]}
        pools = {"doc_type": DOC_TYPES, "institution": institutions[d]}
        for key, q in SPECIMEN_QUESTIONS.items():
            rid = f"util-{spec.profile_id}-{key}"
            rows.append(
                _row(
                    rid,
                    spec.profile_id,
                    d,
                    key,
                    "vqa",
                    q,
                    answers[key],
                    pools[key],
                    specimen_image(spec),
                    seed,
                )
            )
    for domain, table, facts in (("medical", HOSPITALS, HOSPITAL_FACTS), ("labor", COMPANIES, COMPANY_FACTS)):
        for i, inst in enumerate(table, start=1):
            pid = f"{'hospital' if domain == 'medical' else 'company'}-{i:02d}"
            for key, template in facts.items():
                pool = [t[key] for t in table]
                rid = f"util-{pid}-{key}"
                rows.append(
                    _row(
                        rid,
                        pid,
                        domain,
                        key,
                        "qa",
                        template.format(name=inst["name"]),
                        inst[key],
                        pool,
                        None,
                        seed,
                    )
                )
    return rows
