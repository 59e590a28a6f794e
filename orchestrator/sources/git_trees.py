"""Two Git trees compared in the worker's process, as `git diff-tree -r` would list them,
read through the mirror's `git cat-file --batch` (GitPython keeps one open per repository,
the one that reads the blobs too): only subtrees whose ids differ are read, so a one-file
change reads the trees on its path and starts no process of its own.

Each tree read is checked to be in git's strict order: a tree naming a file twice or out of
place (git fsck: duplicateEntries, treeNotSorted) pairs its entries wrongly (diff-tree,
trusting the order, can say `D index.html` of a file the new tree still holds), so it is
reported (Malformed) and the caller lists the whole tree instead."""
from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator

import git

from orchestrator.sources.git_commits import commit_object

DELETED = "000000"
# the modes git writes, already canonical: most entries need no arithmetic
MODES = {b"100644": stat.S_IFREG | 0o644, b"100755": stat.S_IFREG | 0o755, b"40000": stat.S_IFDIR,
         b"120000": stat.S_IFLNK, b"160000": 0o160000}
# (sort key: the name, a tree's with "/" appended, as git orders them; mode; binary id)
Entry = tuple[bytes, int, bytes]
Reader = Callable[[str], bytes]


class Malformed(Exception):
    """A tree that is not one git would write: its id is `tree`."""

    def __init__(self, tree: str):
        super().__init__(tree)
        self.tree = tree


class Unreadable(Exception):
    """An object the comparison needs is not in the repository."""


def commit_tree(repo: git.Repo, revision: str) -> str | None:
    """The id of the revision's tree; None when the repository holds no such commit."""
    data = commit_object(repo, revision)
    if data is None:
        return None
    first = data.split(b"\n", 1)[0]
    return first.removeprefix(b"tree ").decode()


def tree_reader(repo: git.Repo) -> Reader:
    def read(tree: str) -> bytes:
        try:
            _, kind, _, data = repo.git.get_object_data(tree)
        except ValueError:
            raise Unreadable(f"tree {tree} is missing") from None
        if text(kind) != "tree":
            raise Malformed(tree)
        return data
    return read


def text(value: str | bytes) -> str:
    """A header field of GitPython's cat-file answers: typed str, given as bytes."""
    return value.decode() if isinstance(value, bytes) else value


def diff_trees(read: Reader, old: str | None, new: str, subfolder: str = "",
               read_new: Reader | None = None) -> list[tuple[str, str, str]]:
    """(new mode, path relative to `subfolder`, new id) of every file, symlink or submodule
    that differs between the two trees, in git's order; a deletion has mode 000000. With no
    `old` tree, every entry of `new`: a whole listing. `read_new` reads the new side's trees
    when they need checks the old side's, already deployed, do not."""
    read_new = read_new or read
    changes: list[tuple[str, str, str]] = []
    # a stack, not recursion: a tree thousands of folders deep is for the checks to refuse
    stack = [(_folder(read, _descend(read, old, subfolder), _descend(read_new, new, subfolder), read_new), "")]
    while stack:
        pairs, prefix = stack[-1]
        pair = next(pairs, None)
        if pair is None:
            stack.pop()
            continue
        key, before, after = pair
        path = prefix + os.fsdecode(key)
        if key.endswith(b"/"):
            stack.append((_folder(read, before and before[2].hex(), after and after[2].hex(), read_new), path))
        elif after is None:
            changes.append((DELETED, path, "0" * len(new)))
        else:
            changes.append((f"{after[1]:06o}", path, after[2].hex()))
    return changes


def _descend(read: Reader, tree: str | None, subfolder: str) -> str | None:
    """The id of `subfolder`'s tree within `tree`, None where it is not a folder."""
    for name in filter(None, subfolder.split("/")):
        if tree is None:
            return None
        key = os.fsencode(name) + b"/"
        tree = next((oid.hex() for k, _, oid in _entries(read, tree) if k == key), None)
    return tree


def _folder(read: Reader, old: str | None, new: str | None,
            read_new: Reader) -> Iterator[tuple[bytes, Entry | None, Entry | None]]:
    return _pairs(_entries(read, old) if old else [], _entries(read_new, new) if new else [])


def _pairs(a: list[Entry], b: list[Entry]) -> Iterator[tuple[bytes, Entry | None, Entry | None]]:
    """(key, entry before, entry after) of each name that differs, walking both in order."""
    i = j = 0
    while i < len(a) or j < len(b):
        if j == len(b) or (i < len(a) and a[i][0] < b[j][0]):
            yield a[i][0], a[i], None
            i += 1
        elif i == len(a) or b[j][0] < a[i][0]:
            yield b[j][0], None, b[j]
            j += 1
        else:
            if a[i][1:] != b[j][1:]:
                yield a[i][0], a[i], b[j]
            i, j = i + 1, j + 1


def _entries(read: Reader, tree: str) -> list[Entry]:
    """A raw tree object's entries ("<mode> <name>\\0<binary id>"), checked in order."""
    data, size = read(tree), len(tree) // 2
    entries: list[Entry] = []
    start, previous = 0, b""
    try:
        while start < len(data):
            space = data.index(b" ", start)
            end = data.index(b"\0", space)
            mode = MODES.get(data[start:space]) or _canonical(int(data[start:space], 8))
            name = data[space + 1:end]
            key = name + b"/" if mode == stat.S_IFDIR else name
            if key <= previous or end + 1 + size > len(data):
                raise Malformed(tree)
            entries.append((key, mode, data[end + 1:end + 1 + size]))
            previous, start = key, end + 1 + size
    except ValueError:      # no space or NUL where one must be, or a mode that is no number
        raise Malformed(tree) from None
    return entries


def _canonical(mode: int) -> int:
    """The mode git reads an entry as (canon_mode): 100664 is a plain file, 040000 a tree."""
    if stat.S_ISREG(mode):
        return stat.S_IFREG | (0o755 if mode & 0o100 else 0o644)
    if stat.S_ISLNK(mode):
        return stat.S_IFLNK
    if stat.S_ISDIR(mode):
        return stat.S_IFDIR
    return 0o160000     # a submodule's commit (S_IFGITLINK)
