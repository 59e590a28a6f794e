"""`before_switch` (issue 15): a check of the new release before the switch, with the
session's real worker: a passing check lets the release go live, a failing one fails the
deployment with its words and switches nothing."""
from __future__ import annotations

import pytest

from orchestrator.building.command import sandbox_for
from tests.integration.flow import sync_and_wait, tree

CHECK = ('test "$(cat index.html)" = "<h1>good</h1>" || { echo "index.html says: $(cat index.html)"; exit 3; }; '
         'echo "$SLUICE_APP $SLUICE_REVISION" > "$HOME/checked"')


def checked_site(workspace):
    return workspace.app_with({"index.html": "<h1>good</h1>"}, name="checked", layout="site",
                              before_switch=CHECK)


def test_a_release_that_passes_its_check_goes_live(workspace):
    repo, services = checked_site(workspace)

    d = sync_and_wait(services, "checked")

    assert d.status == "success", d.message
    assert (workspace.data_dir / "build-home" / "checked" / "checked").read_text() == f"checked {repo.head()}\n"
    assert tree(workspace.target("checked")) == {"index.html": "<h1>good</h1>"}


def test_a_release_that_fails_its_check_switches_nothing_and_says_why(workspace):
    repo, services = checked_site(workspace)
    first = sync_and_wait(services, "checked")
    repo.commit({"index.html": "<h1>broken</h1>"})

    d = sync_and_wait(services, "checked")

    assert d.status == "failed"
    assert "exited with code 3" in d.message and "index.html says: <h1>broken</h1>" in d.message
    assert d.attempts == 1
    assert tree(workspace.target("checked")) == {"index.html": "<h1>good</h1>"}
    assert services.projections.app("checked").active.id == first.id


def test_a_check_past_its_timeout_fails_the_deployment(workspace):
    repo, services = workspace.app_with({"index.html": "x"}, name="slowcheck", layout="site",
                                        before_switch={"command": "sleep 60", "timeout": "1s"})

    d = sync_and_wait(services, "slowcheck")

    assert d.status == "failed" and "timeout" in d.message, d.message
    assert not workspace.target("slowcheck").exists()


def test_under_the_sandbox_the_check_cannot_change_the_release(workspace):
    if sandbox_for("auto", []) is None:
        pytest.skip("bwrap is not installed here, or cannot run (no user namespaces)")
    repo, services = workspace.app_with({"index.html": "<h1>good</h1>"}, name="meddler", layout="site",
                                        before_switch="echo meddled > index.html")

    d = sync_and_wait(services, "meddler")

    assert d.status == "failed" and "Read-only file system" in d.message, d.message
    release = next((workspace.data_dir / "releases" / "meddler").iterdir())
    assert (release / "index.html").read_text() == "<h1>good</h1>"
