"""Git trees no `git commit` would make, crafted with plumbing, deployed by the real worker.

Each tree is the good release's tree plus one hostile entry: a `..` or `.` path component,
an absolute or slash-laden name, a symlink pointing out of the app, a file and a folder of
the same name. Trees are written as raw objects (`git hash-object -t tree --literally`),
which takes any name (`git mktree` takes `..` and duplicates but refuses names with '/');
then `git commit-tree` and `git update-ref` move the branch the app tracks onto them.
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.flow import sync_and_wait, tree, wait_until_let_go

GOOD = {"index.html": "good\n", "sub/page.html": "page\n"}
FILE, EXEC, LINK, DIR = b"100644", b"100755", b"120000", b"40000"
RETRY = {"attempts": 2, "base": "100ms", "max": "200ms"}


def git_bytes(repo: Path, *args: str, stdin: bytes | None = None) -> str:
    return subprocess.run(["git", *args], cwd=repo, input=stdin, check=True,
                          capture_output=True).stdout.decode().strip()


def write_object(repo: Path, entry) -> tuple[bytes, str]:
    """(mode, object id) of an entry: (mode, name, bytes) for blobs and links, or
    (DIR, name, [entries]) for a tree."""
    mode, _, value = entry
    if mode == DIR:
        return mode, write_tree(repo, value)
    return mode, git_bytes(repo, "hash-object", "-w", "--stdin", stdin=value)


def write_tree(repo: Path, entries: list) -> str:
    """A raw tree object, entries in git's order (a tree sorts as if its name ended in '/'),
    duplicates kept."""
    rows = []
    for entry in entries:
        mode, oid = write_object(repo, entry) if not isinstance(entry[2], str) else (entry[0], entry[2])
        rows.append((entry[1] + (b"/" if mode == DIR else b""), mode, entry[1], oid))
    raw = b"".join(mode + b" " + name + b"\0" + bytes.fromhex(oid)
                   for _, mode, name, oid in sorted(rows, key=lambda r: r[0]))
    return git_bytes(repo, "hash-object", "-t", "tree", "--literally", "-w", "--stdin", stdin=raw)


def commit_on_top(repo: Path, hostile: list, branch: str = "master") -> str:
    """The branch's tree plus the hostile entries at its root, committed onto the branch."""
    root = []
    for line in git_bytes(repo, "ls-tree", branch).splitlines():
        meta, name = line.split("\t", 1)
        mode, _, oid = meta.split(" ")
        root.append((b"40000" if mode == "040000" else mode.encode(), name.encode(), oid))
    tree_id = write_tree(repo, root + hostile)
    commit = git_bytes(repo, "commit-tree", tree_id, "-p", branch, "-m", "hostile")
    git_bytes(repo, "update-ref", f"refs/heads/{branch}", commit)
    return commit


def nested(path: str, leaf_mode: bytes, leaf: bytes) -> tuple:
    """One entry holding `leaf` at the end of `path`, each component a tree (names as given,
    '..' included)."""
    *folders, name = path.split("/")
    entry = (leaf_mode, name.encode(), leaf)
    for folder in reversed(folders):
        entry = (DIR, folder.encode(), [entry])
    return entry


def listing(root: Path, skip: list[Path]) -> dict[str, tuple]:
    """Every entry under root but the skipped folders: kind, size, mtime, link target."""
    seen = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if Path(folder, d) not in skip]
        for name in dirs + files:
            path = Path(folder, name)
            st = path.lstat()
            seen[str(path.relative_to(root))] = (
                st.st_mode, st.st_size if not path.is_dir() else 0, st.st_mtime_ns,
                os.readlink(path) if path.is_symlink() else None)
    return seen


def names_containing(root: Path, token: str) -> list[str]:
    return [os.path.join(folder, n) for folder, dirs, files in os.walk(root)
            for n in dirs + files if token in n]


# `up` points at the app's root (lexically inside), so `up/..` is the release's parent and
# enough of them reach `/`; lexically `DEEP/up/../..(DEPTH + 1 times)/etc` is just `etc`.
DEPTH = 20
DEEP = "/".join(f"u{i}" for i in range(DEPTH))

CASES = {
    # id: (hostile root entries, given the token and the workspace root; text the message names)
    "dotdot-folder": (lambda t, root: [nested(f"../escaped-{t}.txt", FILE, b"x")],
                      "'../escaped-{t}.txt'"),
    "dotdot-deep": (lambda t, root: [nested(f"sub2/../../../escaped-{t}.txt", FILE, b"x")],
                    "'sub2/../../../escaped-{t}.txt'"),
    "dotdot-file": (lambda t, root: [(FILE, b"..", b"x")], "'..'"),
    "dot-folder": (lambda t, root: [nested(f"./escaped-{t}.txt", FILE, b"x")],
                   "'./escaped-{t}.txt'"),
    "absolute-name": (lambda t, root: [(FILE, f"{root}/escaped-{t}.txt".encode(), b"x")],
                      "'{root}/escaped-{t}.txt'"),
    "slashes-in-one-name": (lambda t, root: [(FILE, f"a/../../escaped-{t}.txt".encode(), b"x")],
                            "'a/../../escaped-{t}.txt'"),
    "symlink-up-and-out": (lambda t, root: [(LINK, b"link", f"../../outside-{t}".encode())],
                           "'../../outside-{t}'"),
    "symlink-absolute": (lambda t, root: [(LINK, b"etc", b"/etc")], "'/etc'"),
    "symlink-nested-out": (lambda t, root: [nested("deep/er/link", LINK, f"../../../outside-{t}".encode())],
                           "'deep/er/link'"),
    "symlink-with-files-under-it": (
        lambda t, root: [(LINK, b"out", f"{root}".encode()), nested(f"out/escaped-{t}.txt", FILE, b"x")],
        "'out"),
    "file-and-folder-same-name": (
        lambda t, root: [(FILE, b"app", b"a file"), nested("app/inner.txt", FILE, b"x")], "'app'"),
    "symlink-through-a-symlink": (
        lambda t, root: [nested(DEEP + "/up", LINK, b"../" * DEPTH),
                         (LINK, b"escape", (DEEP + "/up/" + "../" * (DEPTH + 1) + "etc").encode())],
        "'escape'"),
    "symlink-empty-target": (lambda t, root: [(LINK, b"nowhere", b"")], "'nowhere' has an empty target"),
    "symlink-loop": (lambda t, root: [(LINK, b"ping", b"pong"), (LINK, b"pong", b"ping")],
                     "in a loop of links"),
    "duplicate-file-entries": (
        lambda t, root: [(FILE, b"twice.txt", b"one\n"), (FILE, b"twice.txt", b"two\n")],
        "'twice.txt'"),
    # git itself refuses to send this tree ("possible repository corruption", "bad pack
    # header"), so the message can only say what git says
    "empty-name": (lambda t, root: [(FILE, b"", b"x")], "git fetch"),
}
# Trees git's own checks (transfer.fsckObjects) refuse as the mirror fetches them, naming the
# object and the check; objects the mirror got before (unchecked) meet the snapshot's checks,
# which name the entry.
FSCK_REFUSES = {"dotdot-folder": "hasDotdot", "dotdot-deep": "hasDotdot", "dotdot-file": "hasDotdot",
                "dot-folder": "hasDot", "absolute-name": "fullPathname",
                "slashes-in-one-name": "fullPathname", "symlink-with-files-under-it": "duplicateEntries",
                "file-and-folder-same-name": "duplicateEntries", "duplicate-file-entries": "duplicateEntries",
                # a remote's git refuses to send it at all; read in place, fsck's check names it
                "empty-name": "badTree"}
FETCHED = {"on-deploying": "read in place from the local source (checked as a fetch is) when it deploys",
           "before-checks": "in the mirror before it deploys, as fetched by a Sluice without checks"}


def park(repo: Path, commit: str) -> None:
    """Move master back to its parent and keep `commit` on another branch."""
    git_bytes(repo, "update-ref", "refs/heads/parked", commit)
    git_bytes(repo, "update-ref", "refs/heads/master", f"{commit}~1")


def copy_unchecked(repo: Path, data_dir: Path) -> None:
    """What a Sluice without checks fetched into the mirror: every object as it is and the
    parked branch (copied after the good deployment, whose garbage collection drops what
    no ref the app needs holds)."""
    mirror = next((data_dir / "cache" / "git").glob("*.git"))
    shutil.copytree(repo / ".git" / "objects", mirror / "objects", dirs_exist_ok=True,
                    copy_function=copy_unless_same)
    git_bytes(mirror, "update-ref", "refs/heads/parked", git_bytes(repo, "rev-parse", "parked"))


def copy_unless_same(source: str, destination: str) -> str:
    """A local clone hardlinks the objects it takes: those the mirror still shares with the
    repository are already there (copying a file onto itself raises SameFileError)."""
    if os.path.exists(destination) and os.path.samefile(source, destination):
        return destination
    return shutil.copy2(source, destination)


@pytest.mark.parametrize("fetched", list(FETCHED))
@pytest.mark.parametrize("case", list(CASES))
def test_a_hostile_tree_fails_naming_the_entry_and_leaves_the_live_site_and_the_disk_alone(
        workspace, case, fetched):
    repo, services = workspace.app_with(GOOD, layout="site", retry=RETRY)
    token = secrets.token_hex(4)
    hostile, named = CASES[case]
    if fetched == "before-checks":
        repo.through_a_mirror()         # a local source is read in place, with the same checks
        park(repo.path, commit_on_top(repo.path, hostile(token, workspace.root)))
        if case == "empty-name":
            named = "git cannot read the tree of"
    elif case in FSCK_REFUSES:
        named = f"(git fsck {FSCK_REFUSES[case]})"
    good = sync_and_wait(services, "hello")
    if fetched == "before-checks":
        wait_until_let_go(services, "hello")       # its collection cut the mirror down
        copy_unchecked(repo.path, workspace.data_dir)
        git_bytes(repo.path, "update-ref", "refs/heads/master", "refs/heads/parked")
    else:
        commit_on_top(repo.path, hostile(token, workspace.root))
    outside = [workspace.data_dir / "releases", workspace.data_dir / "store",
               workspace.data_dir / "cache"]
    before = listing(workspace.root, outside)

    d = sync_and_wait(services, "hello")

    print(f"\n{case}: {d.status} after {d.attempts} attempt(s): {d.message}")
    assert d.status == "failed" and d.revision == repo.head()
    assert named.format(t=token, root=workspace.root) in d.message
    assert os.readlink(workspace.target("hello")) == good.release
    assert tree(workspace.target("hello")) == GOOD
    assert os.listdir(workspace.data_dir / "releases" / "hello") == [Path(good.release).name]
    assert listing(workspace.root, outside) == before
    assert names_containing(workspace.root, token) == []


def test_a_commit_whose_tree_names_a_file_twice_fails_naming_the_tree_and_gits_check(workspace):
    repo, services = workspace.app_with(GOOD, layout="site", retry=RETRY)
    good = sync_and_wait(services, "hello")
    commit = commit_on_top(repo.path, [(FILE, b"index.html", b"the second entry\n")])

    d = sync_and_wait(services, "hello")

    tree_id = git_bytes(repo.path, "rev-parse", f"{commit}^{{tree}}")
    assert (d.status, d.attempts) == ("failed", 1)
    assert f"{tree_id}: contains duplicate file entries (git fsck duplicateEntries)" in d.message
    assert os.readlink(workspace.target("hello")) == good.release
    assert tree(workspace.target("hello")) == GOOD


def commit_deep_file(repo: Path, depth: int, name: str) -> str:
    """A commit adding one file `depth` levels down ('d/d/.../name'), by fast-import: no
    working tree could hold it (its absolute path would pass PATH_MAX)."""
    path = "d/" * (depth - 1) + name
    stream = (f"commit refs/heads/master\ncommitter T <t@localhost> 0 +0000\ndata 4\ndeep\n"
              f"from refs/heads/master^0\nM 100644 inline {path}\ndata 5\ndeep\n\n").encode()
    git_bytes(repo, "fast-import", "--quiet", stdin=stream)
    return git_bytes(repo, "rev-parse", "refs/heads/master")


def test_a_tree_thousands_of_folders_deep_fails_naming_the_path_and_the_live_site_stays(workspace):
    repo, services = workspace.app_with(GOOD, layout="site", retry=RETRY)
    good = sync_and_wait(services, "hello")
    commit_deep_file(repo.path, 2000, "leaf.txt")

    d = sync_and_wait(services, "hello")

    assert (d.status, d.attempts) == ("failed", 1)
    assert d.message.startswith("'d/d/d/d/") and "/leaf.txt' is 2000 levels deep" in d.message
    assert "at most 256 deep" in d.message
    assert os.readlink(workspace.target("hello")) == good.release
    assert os.listdir(workspace.data_dir / "releases" / "hello") == [Path(good.release).name]
