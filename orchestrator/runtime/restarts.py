"""When `sluice up` starts a child that died again: after a backoff that grows while it keeps
dying soon after starting, and not at all once it dies in a tight loop (something restarting
cannot mend: a taken port, a broken install), so the operator hears of it."""
from __future__ import annotations

import random
from dataclasses import dataclass

from orchestrator.core.backoff import backoff_delay


@dataclass(frozen=True)
class RestartPolicy:
    base: float = 1.0           # seconds before the first restart (then 50-100 % of it)
    maximum: float = 30.0       # the longest wait between restarts
    settled: float = 60.0       # a child that ran this long before dying starts afresh
    give_up_after: int = 5      # restarts in a row, each of a child that died before `settled`


class Restarts:
    """One child's restarts in a row."""

    def __init__(self, policy: RestartPolicy, rng: random.Random | None = None):
        self.policy, self.rng, self.in_a_row = policy, rng, 0

    def after_death(self, ran_for: float) -> float | None:
        """Seconds to wait before starting the child again, which ran `ran_for` seconds;
        None when it has died too often in a row to be worth starting again."""
        self.in_a_row = 1 if ran_for >= self.policy.settled else self.in_a_row + 1
        if self.in_a_row > self.policy.give_up_after:
            return None
        return backoff_delay(self.in_a_row, self.policy.base, self.policy.maximum, self.rng)
