"""The scrub: a slow pass over the store's blobs, a few at a time, each hashed against its name.

Blobs are taken in the order of their names; `{store}/scrub.cursor` keeps the last one a
round checked, so the next round (in whichever process) goes on from there, and a round that
reaches the end starts the next pass from the beginning. A corrupt blob is quarantined
(releases/integrity.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from orchestrator.core.files import write_whole
from orchestrator.releases.integrity import Quarantine, sha256_of
from orchestrator.releases.snapshots import SnapshotStore

CURSOR = "scrub.cursor"


@dataclass(frozen=True)
class ScrubRound:
    checked: int
    corrupt: list[str]          # the blobs quarantined
    pass_ended: bool


def scrub_round(store: SnapshotStore, limit: int) -> ScrubRound:
    """Hash the next `limit` blobs after the cursor; quarantine those that do not match."""
    cursor = store.root / CURSOR
    after = cursor.read_text().strip() if cursor.exists() else ""
    names = blobs_after(store, after, limit)
    checked, corrupt = 0, []
    for name in names:
        try:
            sound = sha256_of(store.blob_path(name)) == name
        except FileNotFoundError:       # collected meanwhile
            continue
        checked += 1
        if not sound:
            Quarantine(store).add_blob(name)
            corrupt.append(name)
    pass_ended = len(names) < limit
    write_whole(cursor, "" if pass_ended else names[-1])
    return ScrubRound(checked, corrupt, pass_ended)


def blobs_after(store: SnapshotStore, after: str, limit: int) -> list[str]:
    """Up to `limit` blob names greater than `after`, in order."""
    found: list[str] = []
    for prefix in sorted(os.listdir(store.blobs)):
        if prefix < after[:2]:
            continue
        names = sorted(n for n in os.listdir(store.blobs / prefix) if n > after)
        found += names[:limit - len(found)]
        if len(found) >= limit:
            break
    return found
