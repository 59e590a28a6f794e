"""A Git mirror kept small between collections, so an app's deployment costs the same at
its thousandth deployment as at its tenth. Each fetch leaves a pack and each deployment a
pin (refs/sluice/keep/<id>); every git command then looks through all the packs and a fetch
reads every ref, so until the next collection (gc_interval) each deployment cost more than
the last. After a deployment, off its lease: the pins no app on the mirror keeps any more are
let go once they pile up, and the small packs are rolled up by git's geometric repack (each
object rewritten a logarithmic number of times), neither waiting for a mirror in use."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from orchestrator.sources.git_cache import KEEP, forget_promises, mirror_git
from orchestrator.sources.vcs_process import idle_clone

PINS = 32       # loose pins beyond the kept revisions before they are let go
PACKS = 16      # packs before the small ones are rolled up


def keep_up(mirror: Path, kept: Callable[[], set[str]], keep_releases: int) -> None:
    """Let go of pins `kept()` does not name (asked only when they piled up) and roll up
    the small packs, unless a fetch or a collection holds the mirror."""
    if not (mirror / "HEAD").exists():
        return
    many_pins = _count(mirror / KEEP) > PINS + 2 * keep_releases
    many_packs = _count(mirror / "objects" / "pack", ".pack") > PACKS
    if not (many_pins or many_packs):
        return
    with idle_clone(mirror) as mine:
        if not mine:
            return
        if many_pins:
            _unpin(mirror, kept)
        if many_packs:
            forget_promises(mirror)     # a killed fetch's marks: rolled up, they would stay
            _git(mirror, "repack", "-d", "-q", "--geometric=2", "--no-write-bitmap-index")


def _unpin(mirror: Path, kept: Callable[[], set[str]]) -> None:
    """Pins listed before the views are read: a pin made after them is left to the next
    round (its deployment may not be in the views yet)."""
    pins = _git(mirror, "for-each-ref", "--format=%(refname)", KEEP).split()
    keep = {KEEP + r for r in kept()}
    gone = "".join(f"delete {ref}\n" for ref in pins if ref not in keep)
    if gone:
        _git(mirror, "update-ref", "--stdin", text_in=gone)


def _count(folder: Path, suffix: str = "") -> int:
    try:
        return sum(1 for name in os.listdir(folder) if name.endswith(suffix))
    except FileNotFoundError:
        return 0


def _git(mirror: Path, *args: str, text_in: str | None = None) -> str:
    # OSError: the clean-up after a deployment logs it and goes on
    return mirror_git(mirror, *args, text_in=text_in, failure=OSError)
