"""The session's worker follows its config file: it reads it once per process and again
when the file changes (orchestrator/config/live.py), so an app added or changed after the
worker read the file is deployed as the file now says."""
from __future__ import annotations

import os

from tests.helpers import git_app
from tests.integration.flow import sync_and_wait, tree


def test_an_app_added_to_the_config_after_the_worker_read_it_is_deployed(workspace):
    repo, services = workspace.app_with({"index.html": "hello\n"}, layout="site")
    assert sync_and_wait(services, "hello").status == "success"

    other = workspace.repo("other")
    other.commit({"index.html": "other\n"})
    services = workspace.configure({"hello": git_app(repo, workspace.target("hello"), layout="site"),
                                    "other": git_app(other, workspace.target("other"), layout="site")})

    assert sync_and_wait(services, "other").status == "success"
    assert tree(workspace.target("other")) == {"index.html": "other\n"}


def test_an_apps_changed_target_is_where_its_next_deployment_goes(workspace):
    repo, services = workspace.app_with({"index.html": "v1\n"}, layout="site")
    first = sync_and_wait(services, "hello")
    # a path of the same length: the file keeps its size, and may keep its mtime's tick
    moved = workspace.target("hallo")
    services = workspace.configure({"hello": git_app(repo, moved, layout="site")})
    repo.commit({"index.html": "v2\n"})

    d = sync_and_wait(services, "hello")

    assert d.status == "success", d.message
    assert os.readlink(moved) == d.release and tree(moved) == {"index.html": "v2\n"}
    assert os.readlink(workspace.target("hello")) == first.release
