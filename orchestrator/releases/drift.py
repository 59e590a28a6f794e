"""Drift: an app's target no longer shows its active release, changed by a hand outside Sluice.

`look` reads what is on disk; `find_drift` (pure) says which drift that is, if any. What to do
about it is deploying/drift.py's decision; nothing here changes the disk.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class DriftKind(StrEnum):
    MISSING = "missing"             # no target at all: switching back repairs it
    ELSEWHERE = "elsewhere"         # a symlink to another path: switching back repairs it
    RELEASE_GONE = "release gone"   # the active release's folder left the disk: redeploy
    OCCUPIED = "occupied"           # a real folder or file stands there: never touched


@dataclass(frozen=True)
class TargetState:
    """What the disk holds at the target and at the active release."""
    what: str                       # absent, symlink, directory, file
    link: str | None = None         # a symlink's text
    shows_release: bool = False     # the target resolves to the active release's folder
    release_present: bool = True


@dataclass(frozen=True)
class Drift:
    kind: DriftKind
    detail: str                     # a sentence naming the paths, for events and people


def look(target: Path, release: str) -> TargetState:
    present = os.path.isdir(release) and not os.path.islink(release)
    if os.path.islink(target):
        link = os.readlink(target)
        return TargetState("symlink", link, present and _same(target, release), present)
    if not os.path.lexists(target):
        return TargetState("absent", release_present=present)
    return TargetState("directory" if os.path.isdir(target) else "file", release_present=present)


def _same(target: Path, release: str) -> bool:
    try:
        return os.path.samefile(target, release)
    except OSError:         # a dangling link
        return False


def find_drift(target: Path, release: str, seen: TargetState) -> Drift | None:
    """The drift `seen` shows against the active `release`, or None when the target shows it.
    Something real in the target's place comes first: nothing else can be repaired then."""
    if seen.what in ("directory", "file"):
        return Drift(DriftKind.OCCUPIED, f"target {target} is a real {seen.what}, not Sluice's "
                     f"symlink to {release}; left alone: move it away and the next check puts "
                     "the symlink back")
    if not seen.release_present:
        return Drift(DriftKind.RELEASE_GONE, f"the active release {release} is gone from disk")
    if seen.what == "absent":
        return Drift(DriftKind.MISSING, f"target {target} is missing")
    if not seen.shows_release:
        return Drift(DriftKind.ELSEWHERE, f"target {target} points at {seen.link}, "
                     f"not at the active release {release}")
    return None
