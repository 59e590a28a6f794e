"""Moving an existing app onto continuous deployment: import a directory as the app's
release (for apps not on continuous deployment yet), export the active release.

An import is an ordinary deployment with its snapshot built here, from the directory, so it
is validated, switched atomically and recorded like any other (trigger `import`). Its files
are also committed to the app's built-in Git repository, so `git clone` hands users the
code they can then move into a repository of their own.
"""
from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from orchestrator.config.settings import AppConfig
from orchestrator.core.errors import PermanentError
from orchestrator.deploying.dispatch import Queued, request_deployment
from orchestrator.releases.readable_release import readable_target
from orchestrator.releases.validation import check_depth
from orchestrator.runtime.services import Services

SKIPPED = frozenset({".git", ".hg"})


def import_directory(services: Services, app: str, directory: Path) -> Queued:
    from orchestrator.access.builtin_git import commit_tree
    from orchestrator.releases.snapshots import SnapshotStore
    config = services.config.apps[app]
    refuse_if_continuous(app, config, "Import")
    directory = Path(directory)
    if not directory.is_dir():
        raise PermanentError(f"{directory} is not a directory")
    writer = SnapshotStore(services.config.data_dir / "store").builder()
    for path, entry in _entries(directory, SKIPPED):
        if entry.is_symlink():
            writer.add_symlink(path, os.readlink(entry.path))
        else:
            with open(entry.path, "rb") as stream:
                writer.add_stream(path, stream, executable=os.access(entry.path, os.X_OK))
    snapshot = writer.seal()
    revision = commit_tree(services.config, app, directory, f"Imported into Sluice from {directory}")
    return request_deployment(services, app, revision, "import", snapshot=snapshot.id,
                              origin=str(directory))


def export_release(services: Services, app: str, destination: Path) -> Path:
    """Copy the active release to `destination` (new or empty), writable, links kept."""
    release = Path(os.path.realpath(readable_target(services, app)))
    if not release.is_dir():
        raise PermanentError(f"app {app!r} has nothing live to export")
    destination = Path(destination)
    if destination.exists() and any(destination.iterdir()):
        raise PermanentError(f"{destination} is not empty; export into a new or empty directory")
    for _ in _entries(release):     # one an earlier Sluice let deeper is refused, as a release is now
        pass
    shutil.copytree(release, destination, symlinks=True, dirs_exist_ok=True)
    for root, dirs, files in os.walk(destination):
        for name in dirs + files:
            full = os.path.join(root, name)
            if not os.path.islink(full):
                os.chmod(full, os.stat(full).st_mode | stat.S_IWUSR)
    os.chmod(destination, os.stat(destination).st_mode | stat.S_IWUSR)
    return release


def refuse_if_continuous(app: str, config: AppConfig, what: str) -> None:
    """Files handed over (an import, a zip) would be overwritten by the source's next change."""
    if config.source.type != "manual":
        raise PermanentError(f"app {app!r} is on continuous deployment ({config.source.describe()}); "
                             f"its files come from its source. {what} is for apps not on it "
                             "(source type manual, the default)")


def _entries(directory: Path, skipped: frozenset[str] = frozenset()) -> Iterator[tuple[str, os.DirEntry]]:
    """(relative path, entry) of every file and symlink, without following links or
    descending into the folders named in `skipped`; an entry deeper than a release may hold
    is refused, naming it, as releases/validation.py refuses it. A loop: os.walk (and
    shutil.copytree) recurse in Python 3.11 and raise RecursionError near 1,000 levels."""
    pending = [""]
    while pending:
        folder = pending.pop()
        subfolders = []
        for entry in _listed(directory, folder):
            path = f"{folder}/{entry.name}" if folder else entry.name
            check_depth(path)
            if not entry.is_dir(follow_symlinks=False):
                yield path, entry
            elif entry.name not in skipped:
                subfolders.append(path)
        pending.extend(reversed(subfolders))       # depth first, in name order


def _listed(directory: Path, folder: str) -> list[os.DirEntry]:
    try:
        with os.scandir(directory / folder) as entries:
            return sorted(entries, key=lambda e: e.name)
    except OSError as exc:       # os.walk skipped such a folder silently: half an import
        raise PermanentError(f"cannot read {directory / folder}: {exc.strerror}") from None
