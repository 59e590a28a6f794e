"""git fsck's tree checks, as run on trees read in place: git's own verdict on the same raw
trees is the reference (`git fsck --strict` in a scratch repository)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orchestrator.sources.git_fsck import problems

BLOB = bytes.fromhex("e69de29bb2d1d6434b8b29ae775ad8c2e48c5391")      # the empty blob


def tree(*entries: tuple[bytes, bytes]) -> bytes:
    return b"".join(mode + b" " + name + b"\0" + BLOB for mode, name in entries)


def gits_verdict(tmp_path: Path, raw: bytes) -> set[str]:
    """The fsck ids git reports for the tree (its messages "error in tree X: <id>: ...")."""
    subprocess.run(["git", "init", "--quiet", str(tmp_path)], check=True)
    subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=tmp_path, input=b"", check=True,
                   capture_output=True)
    oid = subprocess.run(["git", "hash-object", "-t", "tree", "--literally", "-w", "--stdin"], cwd=tmp_path,
                         input=raw, check=True, capture_output=True).stdout.decode().strip()
    out = subprocess.run(["git", "fsck", "--strict", "--no-dangling", oid], cwd=tmp_path,
                         capture_output=True, text=True).stderr
    return {line.split(": ")[1] for line in out.splitlines()
            if line.startswith(("error in tree", "warning in tree")) and not line.endswith("broken links")}


@pytest.mark.parametrize("entries", [
    [(b"100644", b"index.html")],
    [(b"100644", b".gitignore"), (b"100644", b".github")],
    [(b"100644", b"..")],
    [(b"100644", b".")],
    [(b"100644", b".GIT")],
    [(b"100644", b".git. .")],
    [(b"100644", b"GIT~1")],
    [(b"100644", ".g\u200cit".encode())],
    [(b"100644", b"a/b")],
    [(b"100644", b"")],
    [(b"100644", b"b"), (b"100644", b"a")],
    [(b"100644", b"a"), (b"100644", b"a")],
    [(b"100644", b"a"), (b"100644", b"a.txt"), (b"40000", b"a")],
    [(b"0100644", b"a")],
], ids=repr)
def test_a_tree_gets_the_verdict_git_fsck_gives_it(tmp_path, entries):
    raw = tree(*entries)

    assert problems(raw, 20) == gits_verdict(tmp_path, raw)
