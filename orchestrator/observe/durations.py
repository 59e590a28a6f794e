"""How long something took, written for people: one function, in the styles Sluice's
surfaces have always used (each keeps the look its readers and tests know)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Style:
    gap: str = " "                  # between number and unit: "2.35 s", or "" for "2.4s"
    decimals: int = 2               # of seconds below a minute
    ms_below: float = 1.0           # shorter than this: in milliseconds, "41 ms"
    minutes: Literal["words", "clock", ""] = "words"    # a minute on: "1 min 5 s", "1m 05s"
    missing: str = ""               # for a duration not known (yet)


LOG = Style()                                                   # 41 ms, 2.35 s, 1 min 5 s
PAGE = Style(decimals=1, minutes="")                            # 41 ms, 2.4 s, 75.0 s (as dashboard.js)
QUEUE = Style(gap="", decimals=1, ms_below=0, minutes="clock", missing="-")   # 0.4s, 1m 05s, 2h 03m
TABLE = Style(gap="", ms_below=0, minutes="")                   # 0.41s, 75.00s
MILLISECONDS = Style(ms_below=math.inf)                         # 41 ms, 1234 ms


def duration(seconds: float | None, style: Style = LOG) -> str:
    if seconds is None:
        return style.missing
    if seconds < style.ms_below:
        return f"{seconds * 1000:.0f}{style.gap}ms"
    if seconds < 60 or not style.minutes:
        return f"{seconds:.{style.decimals}f}{style.gap}s"
    if style.minutes == "words":
        return f"{int(seconds // 60)} min {seconds % 60:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m"


def took(started: float | None, ended: float | None, style: Style) -> str:
    """How long from `started` to `ended`; the style's `missing` until both are known."""
    return duration(ended - started if started and ended else None, style)
