"""The settings of the stop-when-forgotten rule (:mod:`icu_unlearn.training.stop_rule`), importable without
torch: the command line and ``RunConfig`` check them before anything heavy is loaded."""

from __future__ import annotations

from dataclasses import dataclass

from icu_tasks.errors import ConfigError

#: Default optimizer steps between two checks of the rule.
DEFAULT_CHECK_EVERY = 5


@dataclass(frozen=True)
class ForgettingTarget:
    """Train a stage until its forget rows reach normalised forgetting ``target`` in (0, 1], checked every
    ``check_every`` ≥ 1 optimizer steps (the method's ``max_steps`` is the budget)."""

    target: float
    check_every: int = DEFAULT_CHECK_EVERY

    def __post_init__(self) -> None:
        if isinstance(self.target, bool) or not isinstance(self.target, (int, float)):
            raise ConfigError(f"until_forgotten must be a number in (0, 1], got {self.target!r}")
        if not 0.0 < float(self.target) <= 1.0:
            raise ConfigError(f"until_forgotten must be in (0, 1], got {self.target}")
        if (
            isinstance(self.check_every, bool)
            or not isinstance(self.check_every, int)
            or self.check_every < 1
        ):
            raise ConfigError(f"check_every must be an integer >= 1, got {self.check_every!r}")
