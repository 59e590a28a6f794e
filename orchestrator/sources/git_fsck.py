"""git fsck's checks of a tree's entries, for trees read in place from a local source: a
mirror's fetch has git itself run them (`transfer.fsckObjects`), reading in place has no
fetch. The same checks, in git's order of reporting, with git's names and words, so a
hostile tree fails the same way whichever path read it (fsck.c's fsck_tree, as a strict
fetch reports them: warnings are errors). Not here: the .gitmodules checks (submodules are
not deployed) and those of commit headers (only the tree line is read, strictly)."""
from __future__ import annotations

import re
import stat
from collections.abc import Callable

Reader = Callable[[str], bytes]
# fsck's is_hfs_dotgit ignores these code points (HFS+ drops them from names), in UTF-8
HFS_IGNORED = re.compile("[\u200c-\u200f\u202a-\u202e\u206a-\u206f\ufeff]".encode())
# is_ntfs_dotgit: `.git` or its short name `git~1`, then spaces and dots (NTFS drops them)
# up to the end, an alternate data stream (`:`) or a backslash
NTFS_DOTGIT = re.compile(rb"(?:\.git|git~1)[ .]*(?:$|[:\\])", re.IGNORECASE)
# (fsck's message id, what it says), in the order fsck_tree reports them
CHECKS = (("badTree", "cannot be parsed as a tree"),
          ("nullSha1", "contains entries pointing to null sha1"),
          ("fullPathname", "contains full pathnames"),
          ("hasDot", "contains '.'"),
          ("hasDotdot", "contains '..'"),
          ("hasDotgit", "contains '.git'"),
          ("zeroPaddedFilemode", "contains zero-padded file modes"),
          ("duplicateEntries", "contains duplicate file entries"),
          ("treeNotSorted", "not properly sorted"))


class Refused(Exception):
    """A tree git fsck refuses: `tree` its id, `check` fsck's id, `detail` its words."""

    def __init__(self, tree: str, check: str, detail: str):
        super().__init__(f"{tree}: {detail} (git fsck {check})")
        self.tree, self.check, self.detail = tree, check, detail


def checked(read: Reader) -> Reader:
    """`read`, refusing each tree that fsck would."""
    def read_checked(tree: str) -> bytes:
        data = read(tree)
        found = problems(data, len(tree) // 2)
        for check, detail in CHECKS:
            if check in found:
                raise Refused(tree, check, detail)
        return data
    return read_checked


def problems(data: bytes, id_size: int) -> set[str]:
    """fsck's ids of what is wrong with a raw tree's entries ("<mode> <name>\\0<id>")."""
    found: set[str] = set()
    names: set[bytes] = set()
    start, previous = 0, None
    while start < len(data):
        space, end = data.find(b" ", start), data.find(b"\0", start)
        if space < 0 or end < space or end + 1 + id_size > len(data):
            return found | {"badTree"}
        mode, name = data[start:space], data[space + 1:end]
        if not name or not mode.isdigit() or b"8" in mode or b"9" in mode:   # git's tree walk dies
            return found | {"badTree"}
        found |= _name_problems(name)
        if mode.startswith(b"0"):
            found.add("zeroPaddedFilemode")
        if data[end + 1:end + 1 + id_size] == bytes(id_size):
            found.add("nullSha1")
        key = name + b"/" if stat.S_ISDIR(int(mode, 8)) else name
        if name in names or (previous is not None and key == previous):
            found.add("duplicateEntries")
        elif previous is not None and key < previous:
            found.add("treeNotSorted")
        names.add(name)
        previous, start = key, end + 1 + id_size
    return found


def _name_problems(name: bytes) -> set[str]:
    if b"/" in name:
        return {"fullPathname"}
    if name == b".":
        return {"hasDot"}
    if name == b"..":
        return {"hasDotdot"}
    if NTFS_DOTGIT.match(HFS_IGNORED.sub(b"", name)):
        return {"hasDotgit"}
    return set()
