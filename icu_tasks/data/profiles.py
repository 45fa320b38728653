"""Fictional private records (medical reports, labor contracts), generated with Faker from a seed.

Every person, institution and number here is invented. Answers are kept short (IDs like ``MR-48213``,
addresses like ``12 Oak St, Hullport``, ISO dates, salaries like ``$52,400``) so that a tiny model can
memorise them. Names, ID numbers, addresses, dates of birth and salaries are unique across profiles; the
categorical fields (diagnosis, medication, hospital, employer, position) come from fixed vocabularies.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from faker import Faker

from icu_tasks.data import schema

#: Stamp drawn on every document and recorded in the manifest.
SYNTHETIC_NOTICE = "SYNTHETIC - FICTIONAL DATA"

#: Fictional hospitals and their public (non-private) facts, used by profiles and the utility split.
HOSPITALS: tuple[dict[str, str], ...] = (
    {"name": "Northbrook General Hospital", "city": "Marrowby", "founded": "1921"},
    {"name": "St. Aldric Medical Center", "city": "Eastcliff", "founded": "1887"},
    {"name": "Harrowgate Clinic", "city": "Tallowmere", "founded": "1964"},
    {"name": "Silverlake Memorial", "city": "Greyhaven", "founded": "1949"},
    {"name": "Kingsreach Infirmary", "city": "Port Elmsley", "founded": "1902"},
    {"name": "Bramblewood Hospital", "city": "Hollin Ridge", "founded": "1978"},
    {"name": "Ravenford Medical", "city": "Dunmore Falls", "founded": "1993"},
    {"name": "Marlow Bay Hospital", "city": "Westbury Cove", "founded": "1935"},
)

#: Fictional employers and their public facts.
COMPANIES: tuple[dict[str, str], ...] = (
    {"name": "Kestrel Dynamics", "industry": "Aerospace", "city": "Greyhaven"},
    {"name": "Bluefern Foods", "industry": "Food processing", "city": "Marrowby"},
    {"name": "Orrin Vale Logistics", "industry": "Shipping", "city": "Port Elmsley"},
    {"name": "Cobaltline Software", "industry": "Software", "city": "Eastcliff"},
    {"name": "Marigold Textiles", "industry": "Textiles", "city": "Tallowmere"},
    {"name": "Stonebridge Builders", "industry": "Construction", "city": "Hollin Ridge"},
    {"name": "Lumen Harbor Energy", "industry": "Solar energy", "city": "Westbury Cove"},
    {"name": "Quillstone Media", "industry": "Publishing", "city": "Dunmore Falls"},
)

DIAGNOSES: tuple[str, ...] = (
    "Type 2 diabetes", "Hypertension", "Asthma", "Migraine", "Anemia", "Hypothyroidism", "Gout",
    "Psoriasis", "Eczema", "Bronchitis", "Pneumonia", "Sinusitis", "Osteoarthritis", "Celiac disease",
    "Crohn's disease", "Kidney stones", "Glaucoma", "Vertigo", "Tendinitis", "Sciatica", "Insomnia",
    "Lyme disease", "Shingles", "Angina", "Atrial fibrillation", "Hepatitis B", "Scoliosis", "Rosacea",
    "Tonsillitis", "Pancreatitis",
)  # fmt: skip

MEDICATIONS: tuple[str, ...] = (
    "Metformin", "Lisinopril", "Albuterol", "Sumatriptan", "Ferrous sulfate", "Levothyroxine",
    "Allopurinol", "Methotrexate", "Hydrocortisone", "Amoxicillin", "Azithromycin", "Cetirizine",
    "Ibuprofen", "Mesalamine", "Tamsulosin", "Latanoprost", "Meclizine", "Naproxen", "Gabapentin",
    "Melatonin", "Doxycycline", "Valacyclovir", "Nitroglycerin", "Apixaban", "Tenofovir", "Omeprazole",
    "Atorvastatin", "Prednisone", "Losartan", "Sertraline",
)  # fmt: skip
DOSES: tuple[str, ...] = ("5 mg", "10 mg", "20 mg", "25 mg", "50 mg", "100 mg", "250 mg", "500 mg")

POSITIONS: tuple[str, ...] = (
    "Data analyst", "Staff nurse", "Accountant", "Software engineer", "Electrician", "Sales manager",
    "Line cook", "Graphic designer", "HR coordinator", "Logistics planner", "Welder", "Pharmacist",
    "Quality inspector", "Architect", "Paralegal", "Mechanic", "Copywriter", "Lab technician",
    "Project manager", "Warehouse lead", "Payroll clerk", "Machinist", "UX researcher", "Buyer",
    "Safety officer", "Draftsman", "Forklift operator", "Editor", "Recruiter", "Site supervisor",
)  # fmt: skip

STREET_SUFFIXES: tuple[str, ...] = ("St", "Ave", "Rd", "Ln", "Dr", "Ct", "Way", "Pl")
ID_PREFIX: dict[str, str] = {"medical": "MR-", "labor": "EID-"}
ID_PREFIX_SPECIMEN: dict[str, str] = {"medical": "MR-S", "labor": "EID-S"}
_MAX_CITY_LEN = 13
_BIRTH_RANGE = (dt.date(1940, 1, 1), dt.date(2004, 12, 31))


@dataclass(frozen=True)
class Profile:
    """One fictional person's record.

    ``fields`` maps every sensitive field of the domain (``schema.FIELDS``) to its shown value;
    ``answers`` maps every question key (``schema.QUESTIONS``) to its short answer.
    """

    profile_id: str
    index: int
    domain: str
    fields: dict[str, str]
    answers: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The person's full name."""
        return self.fields[schema.FIELDS[self.domain][0]]


class ValueFactory:
    """Draws field values from one seeded Faker + ``random.Random``; unique fields never repeat."""

    def __init__(self, seed: int) -> None:
        self.fake = Faker("en_US")
        self.fake.seed_instance(seed)
        self.rng = random.Random(seed)
        self._seen: dict[str, set[str]] = {}

    def _unique(self, kind: str, make: Callable[[], str]) -> str:
        seen = self._seen.setdefault(kind, set())
        for _ in range(10_000):
            value = make()
            if value not in seen:
                seen.add(value)
                return value
        raise RuntimeError(f"could not draw a new unique {kind}")  # pragma: no cover - vocabularies are large

    def person_name(self) -> str:
        """A unique ``First Last`` name."""
        return self._unique("name", lambda: f"{self.fake.first_name()} {self.fake.last_name()}")

    def doctor(self) -> str:
        """An attending physician's name (not required to be unique)."""
        return f"Dr. {self.fake.first_name()} {self.fake.last_name()}"

    def id_number(self, prefix: str) -> str:
        """A unique ID such as ``MR-48213``."""
        return self._unique("id", lambda: f"{prefix}{self.rng.randrange(10_000, 100_000)}")

    def city(self) -> str:
        """A short fictional-sounding town name."""
        while True:
            city = self.fake.city()
            if len(city) <= _MAX_CITY_LEN:
                return city

    def address(self) -> str:
        """A unique short address: ``12 Oak St, Hullport``."""

        def make() -> str:
            number = self.rng.randrange(1, 1000)
            street = self.fake.last_name()
            return f"{number} {street} {self.rng.choice(STREET_SUFFIXES)}, {self.city()}"

        return self._unique("address", make)

    def birth_date(self) -> str:
        """A unique ISO date of birth."""
        lo, hi = _BIRTH_RANGE
        span = (hi - lo).days
        return self._unique("dob", lambda: (lo + dt.timedelta(days=self.rng.randrange(span))).isoformat())

    def salary(self) -> str:
        """A unique annual salary such as ``$52,400``."""
        return self._unique("salary", lambda: f"${self.rng.randrange(280, 1800) * 100:,}")

    def contract(self) -> tuple[str, str]:
        """Start and end date (ISO) of a 1-4 year contract starting on the first of a month."""
        start = dt.date(self.rng.randrange(2012, 2025), self.rng.randrange(1, 13), 1)
        end = dt.date(start.year + self.rng.randrange(1, 5), start.month, 1) - dt.timedelta(days=1)
        return start.isoformat(), end.isoformat()

    def medication(self) -> str:
        """A medication with its dose, e.g. ``Lisinopril 20 mg``."""
        return f"{self.rng.choice(MEDICATIONS)} {self.rng.choice(DOSES)}"

    def choice(self, options: tuple[str, ...]) -> str:
        """One of ``options``."""
        return self.rng.choice(options)


def _medical(values: ValueFactory, id_prefix: str) -> dict[str, str]:
    return {
        "patient_name": values.person_name(),
        "date_of_birth": values.birth_date(),
        "id_number": values.id_number(id_prefix),
        "address": values.address(),
        "diagnosis": values.choice(DIAGNOSES),
        "medication": values.medication(),
        "attending_doctor": values.doctor(),
        "hospital": values.choice(tuple(h["name"] for h in HOSPITALS)),
    }


def _labor(values: ValueFactory, id_prefix: str) -> dict[str, str]:
    start, end = values.contract()
    return {
        "employee_name": values.person_name(),
        "id_number": values.id_number(id_prefix),
        "address": values.address(),
        "employer": values.choice(tuple(c["name"] for c in COMPANIES)),
        "salary": values.salary(),
        "position": values.choice(POSITIONS),
        "contract_dates": f"{start} to {end}",
    }


def answers_of(domain: str, fields: dict[str, str]) -> dict[str, str]:
    """The answer of every question key, derived from the shown field values."""
    answers: dict[str, str] = {}
    for key, field_name in schema.QUESTIONS[domain]:
        value = fields[field_name]
        if key == "contract_start":
            value = value.split(" to ")[0]
        elif key == "contract_end":
            value = value.split(" to ")[1]
        answers[key] = value
    return answers


def profile_id(domain: str, number: int, specimen: bool = False) -> str:
    """``med-0001`` / ``lab-0001`` for profiles, ``spec-med-01`` for utility specimen documents."""
    short = "med" if domain == "medical" else "lab"
    return f"spec-{short}-{number:02d}" if specimen else f"{short}-{number:04d}"


def make_profiles(n_per_domain: int, seed: int, n_specimens_per_domain: int = 0) -> list[Profile]:
    """``n_per_domain`` medical then labor profiles, then the utility specimens, all from ``seed``.

    ``Profile.index`` is the position in the returned list (it picks a unique portrait). Specimens are
    fictional people too; they are only shown on held-out documents of the utility split.
    """
    values = ValueFactory(seed)
    makers = {"medical": _medical, "labor": _labor}
    out: list[Profile] = []
    for specimen, count, prefixes in (
        (False, n_per_domain, ID_PREFIX),
        (True, n_specimens_per_domain, ID_PREFIX_SPECIMEN),
    ):
        for domain in schema.DOMAINS:
            for number in range(1, count + 1):
                fields = makers[domain](values, prefixes[domain])
                out.append(
                    Profile(
                        profile_id=profile_id(domain, number, specimen),
                        index=len(out),
                        domain=domain,
                        fields=fields,
                        answers=answers_of(domain, fields),
                    )
                )
    return out


def extra_values(key: str, domain: str, n: int, seed: int) -> list[str]:
    """``n`` freshly drawn values of question ``key`` (used to top up multiple-choice distractors)."""
    values = ValueFactory(seed)
    makers = {"medical": _medical, "labor": _labor}
    prefix = ID_PREFIX[domain]
    return [answers_of(domain, makers[domain](values, prefix))[key] for _ in range(n)]
