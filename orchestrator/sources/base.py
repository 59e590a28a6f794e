"""The small Protocol every source adapter implements."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO, Protocol


@dataclass(frozen=True)
class Change:
    revision: str      # what to deploy
    cursor: str        # what to remember for the next head check


class KnownBlob(Protocol):
    sha256: str
    size: int


class SnapshotWriter(Protocol):
    """Where an adapter puts a revision's files (implemented by orchestrator.releases.snapshots)."""

    def known(self, kind: str, keys: Iterable[str]) -> dict[str, KnownBlob]: ...

    def add_known(self, path: str, entry: KnownBlob, executable: bool = False) -> None: ...

    def add_stream(self, path: str, stream: BinaryIO, executable: bool = False,
                   alias: tuple[str, str] | None = None) -> KnownBlob: ...

    def add_symlink(self, path: str, target: str) -> None: ...

    def remove(self, path: str) -> None: ...

    def drop_base(self) -> None:
        """Start from nothing: the source will list every file."""

    def report_progress(self, done: int, total: int) -> None:
        """Downloads done of those needed (for progress bars); sources call it as they go."""


class Source(Protocol):
    def latest(self, cursor: str | None) -> Change | None:
        """A cheap head check: the change since `cursor`, or None if there is none."""

    def fetch(self, revision: str, into: SnapshotWriter) -> None:
        """Write the app's files at `revision` into the snapshot writer."""

    def describe(self) -> str:
        """A one-line, secret-free description for people."""


def strip_prefix(path: str, prefix: str) -> str | None:
    """`path` relative to the configured subfolder, or None when it lies outside it."""
    if not prefix:
        return path
    return path[len(prefix) + 1:] if path.startswith(prefix + "/") else None
