"""What a source that cannot be reached says: the cause, not git's boilerplate (real git)."""
from __future__ import annotations

import pytest

from orchestrator.config.settings import AppConfig
from orchestrator.core.errors import RevisionNotFound, SluiceError
from orchestrator.releases.snapshots import SnapshotStore
from orchestrator.sources import source_for
from tests.helpers import GitRepo


def head_check_error(tmp_path, url: str) -> str:
    app = AppConfig.model_validate({"target": str(tmp_path / "site"),
                                    "source": {"type": "git", "url": url}})
    with pytest.raises(SluiceError) as caught:
        source_for(app, tmp_path / "data").latest(None)
    return str(caught.value)


def test_an_unreachable_repository_names_the_refused_connection(tmp_path):
    message = head_check_error(tmp_path, "git://127.0.0.1:1/app.git")

    assert "Connection refused" in message


def test_a_missing_repository_says_it_is_not_a_git_repository(tmp_path):
    message = head_check_error(tmp_path, str(tmp_path / "missing"))

    assert "does not appear to be a git repository" in message and "access rights" not in message


def test_an_unreachable_ssh_repository_names_the_refused_connection(tmp_path):
    message = head_check_error(tmp_path, "ssh://git@127.0.0.1:1/app.git")

    assert "Connection refused" in message and "repository exists" not in message


def test_fetching_from_a_branch_the_repository_does_not_have_is_a_revision_not_found(tmp_path):
    repo = GitRepo(tmp_path / "repo")
    revision = repo.commit({"index.html": "<h1>hi</h1>\n"})
    app = AppConfig.model_validate({"target": str(tmp_path / "site"), "source": {
        "type": "git", "url": str(repo.path), "branch": "gone"}})
    store = SnapshotStore(tmp_path / "data" / "store")

    with pytest.raises(RevisionNotFound, match="branch 'gone' not found"):
        source_for(app, tmp_path / "data").fetch(revision, store.builder())
