"""The small Protocol every source adapter implements."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import IO, Any, Protocol, TypeVar, runtime_checkable


@dataclass(frozen=True)
class Change:
    revision: str      # what to deploy
    cursor: str        # what to remember for the next head check


class KnownBlob(Protocol):
    """A blob the store holds (read-only, as the store's own entries are)."""

    @property
    def sha256(self) -> str: ...

    @property
    def size(self) -> int: ...


# The writer's own kind of entry: sources never look inside one, they only hand back to
# add_known what known() gave them, so each writer keeps its own type.
Entry = TypeVar("Entry", bound=KnownBlob)


class SnapshotWriter(Protocol[Entry]):
    """Where an adapter puts a revision's files (releases.snapshots.SnapshotBuilder is one)."""

    @property
    def base_revision(self) -> str | None:
        """The source revision whose files the writer starts from, or None when it starts
        empty: a source that can list what changed since then writes only those files."""

    def known(self, kind: str, keys: Iterable[str]) -> Mapping[str, Entry]: ...

    def add_known(self, path: str, entry: Entry, executable: bool = False) -> None: ...

    def add_stream(self, path: str, stream: IO[bytes], executable: bool = False,
                   alias: tuple[str, str] | None = None) -> Entry: ...

    def add_symlink(self, path: str, target: str) -> None: ...

    def remove(self, path: str) -> None: ...

    def drop_base(self) -> None:
        """Start from nothing: the source will list every file."""

    def ignored(self, paths: Iterable[str]) -> set[str]:
        """Those of `paths` no release will hold (local.settings.json, .git/, the patterns of
        the .funcignore written so far): a source that writes the .funcignore first need
        not fetch them at all."""

    def report_progress(self, done: int, total: int) -> None:
        """Downloads done of those needed (for progress bars); sources call it as they go."""

    def describe_commit(self, author: str, author_email: str, message: str) -> None:
        """The revision's commit, for the history (a source with commits: git, hg)."""


class Source(Protocol):
    def latest(self, cursor: str | None) -> Change | None:
        """A cheap head check: the change since `cursor`, or None if there is none."""

    def fetch(self, revision: str, into: SnapshotWriter[Any]) -> None:
        """Write the app's files at `revision` into the snapshot writer."""

    def describe(self) -> str:
        """A one-line, secret-free description for people."""


@runtime_checkable
class NotifyingSource(Source, Protocol):
    """A source that can also say when it changed (Dropbox's longpoll), so its app need not
    wait for the next poll."""

    def wait_for_change(self, cursor: str) -> float:
        """Block until the source changed since `cursor` or a timeout: negative when it
        changed or the cursor is no longer valid (the head check lists afresh), else the
        seconds to wait before asking again (0: at once)."""


def strip_prefix(path: str, prefix: str) -> str | None:
    """`path` relative to the configured subfolder, or None when it lies outside it."""
    if not prefix:
        return path
    return path[len(prefix) + 1:] if path.startswith(prefix + "/") else None
