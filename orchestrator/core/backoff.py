"""Exponential backoff with jitter, shared by deployment retries and failing head checks."""
from __future__ import annotations

import random


def backoff_delay(attempt: int, base: float, maximum: float,
                  rng: random.Random | None = None) -> float:
    """Delay before try number attempt+1: base * 2^(attempt-1), capped, then 50-100% of it."""
    ceiling = min(maximum, base * 2 ** max(0, attempt - 1))
    return ceiling * (0.5 + 0.5 * (rng or random).random())
