"""The scale of a generation run and its split plan, computed without generating anything.

:class:`GenerateConfig` checks a scale (profiles, forget tasks, profiles per task, image size, seed);
:func:`assign_splits` puts every profile into a forget task or into retain_train / retain_eval / holdout
(:func:`retain_split_sizes` divides the retain profiles); :func:`expected_counts` is what a generation at that
scale produces, from the schema arithmetic alone. :mod:`icu_tasks.data.generate` builds the files.
"""

from __future__ import annotations

from dataclasses import dataclass

from icu_tasks.data import schema, utility
from icu_tasks.data.defaults import IMAGE_SIZE
from icu_tasks.data.profiles import Profile
from icu_tasks.data.questions import row_rng
from icu_tasks.errors import ConfigError

DEFAULT_IMAGE_SIZE = IMAGE_SIZE
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 96, 2048
MAX_PROFILES = 20_000


@dataclass
class GenerateConfig:
    """Scale and seed of a generation run; invalid values raise :class:`ConfigError` on construction."""

    seed: int = 0
    profiles: int = 1000
    tasks: int = 100
    profiles_per_task: int = 5
    image_size: int = DEFAULT_IMAGE_SIZE

    def __post_init__(self) -> None:
        for name in ("seed", "profiles", "tasks", "profiles_per_task", "image_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if self.profiles < 4 or self.profiles % 2 or self.profiles > MAX_PROFILES:
            raise ConfigError(
                f"profiles must be an even number (half medical, half labor) between 4 and {MAX_PROFILES}, "
                f"got {self.profiles}"
            )
        if self.tasks < 1 or self.profiles_per_task < 1:
            raise ConfigError(
                f"tasks and profiles_per_task must be >= 1, got tasks={self.tasks}, "
                f"profiles_per_task={self.profiles_per_task}"
            )
        if self.forget_profiles > self.profiles - 2:
            raise ConfigError(
                f"tasks x profiles_per_task = {self.forget_profiles} forget profiles must leave at least 2 of the "
                f"{self.profiles} profiles as retain profiles; lower --tasks or --profiles-per-task"
            )
        if not MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE:
            raise ConfigError(
                f"image_size must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} px, got {self.image_size}"
            )

    @property
    def forget_profiles(self) -> int:
        """Profiles in all forget tasks together."""
        return self.tasks * self.profiles_per_task


def retain_split_sizes(n: int, domain: str) -> dict[str, int]:
    """How the ``n`` retain profiles of one domain divide into retain_train / retain_eval / holdout.

    The shares of :data:`schema.RETAIN_SHARES` (40 / 30 / 30 %) with largest-remainder rounding: each split
    gets the floor of its quota, the profiles left over go to the largest remainders (ties in the order
    train, eval, holdout). From 3 profiles up every split gets at least one; 2 profiles give one train and one
    eval; a single profile goes to train in the first domain and to eval in the second, so that the whole
    data set always has a retain_train and a retain_eval profile (each domain keeps >= 1 retain profile).
    """
    if n == 1:
        return {
            "retain_train": int(domain == schema.DOMAINS[0]),
            "retain_eval": int(domain != schema.DOMAINS[0]),
            schema.HOLDOUT: 0,
        }
    total = sum(share for _, share in schema.RETAIN_SHARES)
    sizes = {split: n * share // total for split, share in schema.RETAIN_SHARES}
    order = sorted(
        range(len(schema.RETAIN_SHARES)),
        key=lambda i: (-(n * schema.RETAIN_SHARES[i][1] % total), i),
    )
    for i in order[: n - sum(sizes.values())]:
        sizes[schema.RETAIN_SHARES[i][0]] += 1
    return sizes


def _retain_counts(cfg: GenerateConfig) -> dict[str, int]:
    """Retain profiles per split (both domains together) at this scale."""
    per_domain = cfg.profiles // 2
    forget_med = (cfg.forget_profiles + 1) // 2  # forget profiles alternate medical, labor, medical, ...
    rest = {
        schema.DOMAINS[0]: per_domain - forget_med,
        schema.DOMAINS[1]: per_domain - (cfg.forget_profiles - forget_med),
    }
    out = {split: 0 for split, _ in schema.RETAIN_SHARES}
    for domain, n in rest.items():
        for split, k in retain_split_sizes(n, domain).items():
            out[split] += k
    return out


def expected_counts(cfg: GenerateConfig) -> dict[str, int]:
    """What a generation at this scale produces, from the schema arithmetic alone (nothing is generated).

    ``qa_rows`` / ``rows_total`` count the core rows (``qa.parquet``); ``paraphrase_rows`` the held-out
    phrasing (``qa_paraphrase.parquet``), one per profile row, counted apart; ``longform_rows`` the long-form
    view (``qa_longform.parquet``), one per profile, counted apart too.
    """
    per_domain = cfg.profiles // 2
    retain = _retain_counts(cfg)
    specimens = utility.n_specimens_per_domain(cfg.profiles)
    qa = per_domain * sum(schema.qa_per_profile(d) for d in schema.DOMAINS)
    util = utility.utility_rows_count(cfg.profiles)
    return {
        "profiles": cfg.profiles,
        "profiles_medical": per_domain,
        "profiles_labor": per_domain,
        "forget_tasks": cfg.tasks,
        "profiles_per_task": cfg.profiles_per_task,
        "forget_profiles": cfg.forget_profiles,
        "retain_profiles": sum(retain.values()),
        "retain_train_profiles": retain["retain_train"],
        "retain_eval_profiles": retain["retain_eval"],
        "holdout_profiles": retain[schema.HOLDOUT],
        "images": per_domain * sum(schema.images_per_profile(d) for d in schema.DOMAINS),
        "utility_images": specimens * len(schema.DOMAINS),
        "utility_specimens": specimens * len(schema.DOMAINS),
        "qa_rows": qa,
        "utility_rows": util,
        "rows_total": qa + util,
        "paraphrase_rows": qa,
        "longform_rows": cfg.profiles,
    }


def assign_splits(profiles: list[Profile], cfg: GenerateConfig) -> dict[str, tuple[str, int]]:
    """profile id -> (split, forget task) for every profile.

    Forget profiles are drawn alternately from the two shuffled domains and cut into consecutive tasks, so
    each task is balanced (or off by one) between medical and labor. The rest of each domain is cut, in the
    same shuffled order, into retain_train / retain_eval / holdout by :func:`retain_split_sizes`.
    """
    rng = row_rng(cfg.seed, "splits")
    pools = {d: [p.profile_id for p in profiles if p.domain == d] for d in schema.DOMAINS}
    for ids in pools.values():
        rng.shuffle(ids)
    plan: dict[str, tuple[str, int]] = {}
    taken = {d: 0 for d in schema.DOMAINS}
    for i in range(cfg.forget_profiles):
        domain = schema.DOMAINS[i % 2]
        plan[pools[domain][taken[domain]]] = ("forget", i // cfg.profiles_per_task + 1)
        taken[domain] += 1
    for d, ids in pools.items():
        rest = iter(ids[taken[d] :])
        for split, n in retain_split_sizes(len(ids) - taken[d], d).items():
            for _ in range(n):
                plan[next(rest)] = (split, 0)
    return plan


__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "GenerateConfig",
    "assign_splits",
    "expected_counts",
    "retain_split_sizes",
]
