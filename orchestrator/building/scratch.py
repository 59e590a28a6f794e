"""The scratch side of a build: a snapshot copied out of the store where a build may change
anything, what the build made there taken back into the store as a layer, and a layer laid
over the snapshot it was built on."""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
from pathlib import Path

from orchestrator.building.plan import TARGET
from orchestrator.core.errors import BuildFailed, InvalidAppLayout
from orchestrator.releases.snapshots import FileEntry, Manifest, SnapshotStore
from orchestrator.releases.tree_checks import check_tree, implied_dirs, safe_path


def scratch_copy(store: SnapshotStore, manifest: Manifest, into: Path) -> None:
    """The snapshot's tree at `into` (absent or empty), as copies: a build rewriting a file
    in place must not reach the store's blob, which releases hardlink."""
    into.mkdir(parents=True, exist_ok=True)
    if any(into.iterdir()):
        raise FileExistsError(f"scratch folder {into} is not empty")
    for folder in sorted(implied_dirs((*manifest.files, *manifest.links))):
        (into / folder).mkdir()
    for path, entry in manifest.files.items():
        dest = into / path
        shutil.copyfile(store.blob_path(entry.sha256), dest)
        os.chmod(dest, 0o755 if entry.executable else 0o644)
    for path, target in manifest.links.items():
        os.symlink(target, into / path)


def collect_output(store: SnapshotStore, root: Path, base: Manifest, output: str,
                   written: set[str] | None = None, *, move: bool = False) -> Manifest:
    """What a build made under `root`, as a layer of the files and links new or changed
    against `base`: under the folder `output` only; "" anywhere; TARGET anywhere, `root`
    being then DEPLOYMENT_TARGET. Files go into the store (those it lacked added to
    `written`). A link leaving the tree, a special file or an unsafe name is refused.
    `move`: nothing will run in `root` again, so a file no other name shares is moved into
    the store as its blob instead of written again (a first build's output is thousands of
    files, each written once more by a copy)."""
    collector = _Collector(store, root, base, written, move)
    start = "" if output == TARGET else output
    try:
        if collector.enter(start):
            collector.walk(start)
        layer = Manifest(collector.files, collector.links)
        check_tree(overlay(base, layer, output))
    except InvalidAppLayout as exc:
        raise BuildFailed(f"the build's output: {exc}") from None
    return layer


class _Collector:
    def __init__(self, store: SnapshotStore, root: Path, base: Manifest,
                 written: set[str] | None, move: bool = False):
        self.store, self.root, self.base, self.written = store, root, base, written
        self.move = move
        self.files: dict[str, FileEntry] = {}
        self.links: dict[str, str] = {}

    def enter(self, start: str) -> bool:
        """Whether `start` is a folder to walk; a file or link on the way there is taken
        as it is (the tree checks judge a link), nothing there is an empty layer."""
        path = ""
        for name in start.split("/") if start else ():
            path = f"{path}/{name}" if path else name
            try:
                st = os.lstat(self.root / path)
            except FileNotFoundError:
                return False
            if not stat.S_ISDIR(st.st_mode):
                self.take(path, st)
                return False
        return True

    def walk(self, start: str) -> None:
        """A loop, not recursion: a build can make a tree deeper than Python's stack."""
        folders = [start]
        while folders:
            folder = folders.pop()
            with os.scandir(self.root / folder if folder else self.root) as entries:
                for entry in entries:
                    path = f"{folder}/{entry.name}" if folder else entry.name
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        folders.append(path)
                    else:
                        self.take(path, st)

    def take(self, path: str, st: os.stat_result) -> None:
        _check_name(path)
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(self.root / path)
            if self.base.links.get(path) != target:
                self.links[path] = target
        elif stat.S_ISREG(st.st_mode):
            self._take_file(path, st)
        else:
            raise BuildFailed(f"the build left {path!r}, which is neither a file, a folder "
                                 "nor a symlink: a release cannot hold it")

    def _take_file(self, path: str, st: os.stat_result) -> None:
        executable = bool(st.st_mode & stat.S_IXUSR)
        old = self.base.files.get(path)
        try:
            with _open(self.root / path) as stream:
                if old and old.size == st.st_size and old.executable == executable \
                        and hashlib.file_digest(stream, "sha256").hexdigest() == old.sha256:
                    return
                stream.seek(0)
                entry = (self.move and _move_into_store(self.store, self.root / path, stream, st,
                                                        self.written)) \
                    or self.store.put_stream(stream, self.written)
        except OSError as exc:
            raise BuildFailed(f"the build's file {path!r} cannot be read: {exc.strerror}") from None
        self.files[path] = FileEntry(entry.sha256, entry.size, executable)


def _move_into_store(store: SnapshotStore, path: Path, stream, st: os.stat_result,
                     written: set[str] | None) -> FileEntry | None:
    """The build's file renamed into the store as its blob, or None (the caller copies it):
    only a file with no other name (a link into the build home's cache could be rewritten
    by the next build), still the one opened, on the store's filesystem."""
    opened = os.fstat(stream.fileno())
    if opened.st_nlink != 1 or (opened.st_ino, opened.st_dev) != (st.st_ino, st.st_dev):
        return None
    sha256 = hashlib.file_digest(stream, "sha256").hexdigest()
    entry, blob = FileEntry(sha256, opened.st_size), store.blob_path(sha256)
    if os.path.exists(blob):
        return entry
    os.fchmod(stream.fileno(), 0o444)
    os.utime(stream.fileno())   # the collector spares young blobs: a build may keep old times
    try:
        os.rename(path, blob)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(blob), exist_ok=True)
        os.rename(path, blob)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        stream.seek(0)
        return None
    if written is not None:
        written.add(sha256)
    return entry


def _open(path: Path):
    """Never through a link swapped in meanwhile, never blocking on a FIFO."""
    return os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb")


def _check_name(path: str) -> None:
    safe_path(path)
    try:
        path.encode()
    except UnicodeEncodeError:
        raise BuildFailed(f"the build made a file whose name is not UTF-8: {path!r}") from None


def overlay(base: Manifest, layer: Manifest, output: str) -> Manifest:
    """`base` with `layer` on top; the layer wins wherever the two meet, also where one has
    a folder and the other a file or link of the same name. TARGET: the layer alone."""
    if output == TARGET:
        return layer
    taken = layer.files.keys() | layer.links.keys()
    shadowed = taken | layer.folders().keys()      # worked out once for a layer read before
    files = {p: e for p, e in base.files.items() if not _under(p, taken, shadowed)}
    links = {p: t for p, t in base.links.items() if not _under(p, taken, shadowed)}
    return Manifest({**files, **layer.files}, {**links, **layer.links})


def _under(path: str, taken: set[str], shadowed: set[str]) -> bool:
    """A base entry the layer replaces: at a path the layer holds or needs as a folder, or
    inside an entry of the layer (a folder of the base where the layer has a file)."""
    if path in shadowed:
        return True
    parent = path.rpartition("/")[0]
    while parent:
        if parent in taken:
            return True
        parent = parent.rpartition("/")[0]
    return False
