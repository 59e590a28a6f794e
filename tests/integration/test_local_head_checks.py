"""Head checks of local repositories read the refs from the repository's files, no process,
and answer exactly what `git ls-remote PATH` answers (real git repositories, real git)."""
from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from orchestrator.config.sources import GitSourceConfig
from orchestrator.core.errors import RevisionNotFound, SluiceError, TransientError
from orchestrator.sources import local_refs
from orchestrator.sources.git import GitSource
from tests.helpers import GitRepo, git

# Every process this interpreter starts, while a test listens (audit hooks stay for good).
_spawns: list[list[str]] | None = None
SPAWN_EVENTS = ("subprocess.Popen", "os.posix_spawn", "os.fork", "os.exec", "os.system")


def _audit(event: str, args: tuple) -> None:
    if _spawns is not None and event in SPAWN_EVENTS:
        _spawns.append([event, *map(str, args[:2])])


sys.addaudithook(_audit)


@contextmanager
def spawned():
    """The processes started within the block."""
    global _spawns
    _spawns = started = []
    try:
        yield started
    finally:
        _spawns = None


@pytest.fixture(autouse=True)
def plain_user_config(tmp_path, monkeypatch):
    """No system or user git config of the machine's, which might hide refs or rewrite URLs."""
    (tmp_path / "gitconfig").write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    local_refs.forget()
    yield
    local_refs.forget()


def head(url: str | Path, branch: str = "master") -> tuple[str, list]:
    """(the head check's answer, the processes it started)."""
    with spawned() as started:
        answer = GitSource(GitSourceConfig(type="git", url=str(url), branch=branch),
                           Path("/nonexistent")).head()
    return answer, started


def ls_remote(url: str | Path, branch: str = "master") -> str | None:
    ref = f"refs/heads/{branch}"
    for line in git(Path("/"), "ls-remote", str(url), ref).splitlines():
        sha, _, name = line.partition("\t")
        if name == ref:
            return sha
    return None


def error_of(url: str | Path, branch: str = "master") -> tuple[type, str, list]:
    with spawned() as started, pytest.raises(SluiceError) as caught:
        GitSource(GitSourceConfig(type="git", url=str(url), branch=branch), Path("/nonexistent")).head()
    return type(caught.value), str(caught.value), started


@pytest.fixture
def repo(tmp_path) -> GitRepo:
    repo = GitRepo(tmp_path / "work")
    repo.commit({"index.html": "v1"})
    return repo


def test_a_loose_branch_head_is_read_without_starting_a_process(repo):
    answer, started = head(repo.path)

    assert answer == repo.head() == ls_remote(repo.path)
    assert started == []


def test_a_branch_only_in_packed_refs_is_read_from_there(repo, tmp_path):
    bare = tmp_path / "site.git"
    git(tmp_path, "clone", "--quiet", "--bare", str(repo.path), str(bare))
    git(bare, "tag", "-a", "-m", "peeled in packed-refs", "v1")
    git(bare, "pack-refs", "--all")
    assert not (bare / "refs" / "heads" / "master").exists()

    answer, started = head(bare)

    assert answer == repo.head() == ls_remote(bare)
    assert started == []


def test_a_branch_updated_after_packing_is_read_from_its_loose_ref(repo):
    git(repo.path, "pack-refs", "--all")
    newer = repo.commit({"index.html": "v2"})

    answer, started = head(repo.path)

    assert answer == newer == ls_remote(repo.path)
    assert started == []


def test_a_file_url_reads_the_same_repository(repo):
    answer, started = head(f"file://{repo.path}")

    assert answer == repo.head() and started == []


def test_a_branch_that_is_a_symbolic_ref_is_followed_whatever_head_names(repo):
    repo.checkout("trunk", create=True)
    trunk = repo.commit({"index.html": "trunk"})
    git(repo.path, "symbolic-ref", "refs/heads/main", "refs/heads/trunk")
    git(repo.path, "symbolic-ref", "HEAD", "refs/heads/master")

    answer, started = head(repo.path, "main")

    assert answer == trunk == ls_remote(repo.path, "main")
    assert ls_remote(repo.path, "master") != trunk
    assert started == []


def test_a_linked_worktree_reads_the_branch_from_the_common_repository(repo, tmp_path):
    git(repo.path, "worktree", "add", "--quiet", "-b", "feature", str(tmp_path / "feature"))
    git(repo.path, "pack-refs", "--all")
    assert (tmp_path / "feature" / ".git").is_file()

    answer, started = head(tmp_path / "feature")

    assert answer == repo.head() == ls_remote(tmp_path / "feature")
    assert started == []


def test_a_dot_git_file_naming_a_relative_git_dir_is_followed(repo, tmp_path):
    moved = tmp_path / "modules" / "site.git"
    moved.parent.mkdir()
    (repo.path / ".git").rename(moved)
    (repo.path / ".git").write_text("gitdir: ../modules/site.git\n")

    answer, started = head(repo.path)

    assert answer == repo.head() == ls_remote(repo.path)
    assert started == []


def test_a_sha256_repository_gives_its_long_ids(tmp_path):
    git(tmp_path, "init", "--quiet", "--object-format=sha256", "--initial-branch=master", "long")
    (tmp_path / "long" / "index.html").write_text("v1")
    git(tmp_path / "long", "add", "-A")
    git(tmp_path / "long", "commit", "--quiet", "-m", "v1")

    answer, started = head(tmp_path / "long")

    assert len(answer) == 64 and answer == ls_remote(tmp_path / "long")
    assert started == []


def test_a_missing_branch_is_the_same_revision_not_found_without_a_process(repo):
    kind, message, started = error_of(repo.path, "gone")

    assert kind is RevisionNotFound
    assert message == f"branch 'gone' not found in {repo.path}"
    assert started == []


def test_each_check_sees_the_branch_as_it_is_now(repo):
    first, _ = head(repo.path)
    moved = repo.commit({"index.html": "v2"})
    second, _ = head(repo.path)
    git(repo.path, "pack-refs", "--all")
    git(repo.path, "update-ref", "refs/heads/master", first)
    third, started = head(repo.path)

    assert (second, third) == (moved, first)
    assert started == []


def test_the_users_git_config_is_looked_at_again_after_a_second(repo, tmp_path):
    clock = [100.0]
    check = lambda: local_refs.local_head(str(repo.path), "master", now=lambda: clock[0])
    assert check() == repo.head()

    (tmp_path / "gitconfig").write_text("[transfer]\n\thideRefs = refs/heads/master\n")
    clock[0] += 0.5
    within_the_second = check()
    clock[0] += 0.5
    with pytest.raises(local_refs.AskGit, match="hiderefs"):
        check()

    assert within_the_second == repo.head()


def test_a_missing_repository_fails_as_git_ls_remote_says(tmp_path):
    kind, message, started = error_of(tmp_path / "missing")

    assert "does not appear to be a git repository" in message
    assert started != []        # git's own words


# Below, what the reader leaves to git: the answer is git ls-remote's, by a process.

def test_a_reftable_repository_is_left_to_git(tmp_path):
    made = subprocess.run(["git", "init", "--quiet", "--ref-format=reftable", str(tmp_path / "rt")],
                          capture_output=True, text=True)
    if made.returncode:
        pytest.skip("this git cannot make a reftable repository: "
                    f"{made.stderr.strip().splitlines()[0]}")
    repo = GitRepo(tmp_path / "rt")
    revision = repo.commit({"index.html": "v1"})

    answer, started = head(repo.path)

    assert answer == revision and started != []


def test_a_config_naming_the_reftable_storage_is_left_to_git(repo):
    # the files backend's refs are still there, and wrong: git refuses the repository (an
    # older git) or reads its reftable, which holds no branch
    git(repo.path, "config", "core.repositoryformatversion", "1")
    git(repo.path, "config", "extensions.refStorage", "reftable")

    kind, message, started = error_of(repo.path)

    assert started != []
    assert kind is TransientError and message.endswith("failed: refstorage") or kind is RevisionNotFound


def test_refs_hidden_by_the_repositorys_config_stay_hidden(repo):
    git(repo.path, "config", "transfer.hideRefs", "refs/heads/master")

    kind, message, started = error_of(repo.path)

    assert kind is RevisionNotFound and ls_remote(repo.path) is None
    assert started != []


def test_refs_hidden_by_the_users_config_stay_hidden(repo, tmp_path):
    (tmp_path / "gitconfig").write_text("[uploadpack]\n\thideRefs = refs/heads/master\n")

    kind, message, started = error_of(repo.path)

    assert kind is RevisionNotFound and ls_remote(repo.path) is None
    assert started != []


def test_a_broken_loose_ref_gets_gits_answer(repo):
    (repo.path / ".git" / "refs" / "heads" / "broken").write_text("not an id\n")

    answer, started = head(repo.path, "broken")

    assert answer == ls_remote(repo.path, "broken") and started != []


def test_a_dangling_symbolic_ref_is_not_found_as_git_says(repo):
    git(repo.path, "symbolic-ref", "refs/heads/main", "refs/heads/nowhere")

    kind, message, started = error_of(repo.path, "main")

    assert kind is RevisionNotFound and ls_remote(repo.path, "main") is None
    assert started != []


@pytest.mark.skipif(os.geteuid() != 0, reason="giving the repository to another user needs root")
def test_a_repository_another_user_owns_is_left_to_git(repo):
    subprocess.run(["chown", "-R", "nobody", str(repo.path)], check=True)

    kind, message, started = error_of(repo.path)

    assert "safe.directory" in message
    assert started != []
