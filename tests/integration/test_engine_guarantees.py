"""The deployment engine's guarantees: idempotent, coalescing, fenced, retrying, reversible."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from orchestrator.core import keys
from orchestrator.core.lease import Lease, LeaseLost
from orchestrator.deploying.dispatch import enqueue, request_deployment
from orchestrator.deploying.operator_actions import pause, promote, redeploy, resume
from orchestrator.deploying.rollback import rollback
from orchestrator.releases.materialise import Fenced, switch
from orchestrator.releases.retention import collect_garbage, kept_snapshots
from orchestrator.triggers.poller import Poller
from tests.helpers import FUNCTION_APP, git_app, wait_for
from tests.integration.flow import (
    deploy_messages,
    event_types,
    sync_and_wait,
    tree,
    wait_until_drained,
    wait_until_ended,
)
from workers import runner

V2 = {"HttpHello/__init__.py": "def main(req):\n    return 'v2'\n"}
V3 = {"HttpHello/__init__.py": "def main(req):\n    return 'v3'\n"}


def deployed_version(workspace, app="hello") -> str:
    return (workspace.target(app) / "HttpHello" / "__init__.py").read_text().split("'")[1]


# --- idempotency ----------------------------------------------------------------------

def test_a_redelivered_task_for_an_ended_deployment_does_nothing(workspace):
    _, services = workspace.app_with(FUNCTION_APP)
    d = sync_and_wait(services, "hello")
    version = services.store.version("hello")

    outcome = runner.run(workspace.worker_context(services), "hello", d.id, 1)
    enqueue(services, "hello", d.id)
    wait_until_drained(services, d.id)

    assert outcome.startswith("nothing to do (success)")
    assert services.store.version("hello") == version


def test_a_change_to_the_live_revision_queues_nothing(workspace):
    repo, services = workspace.app_with(FUNCTION_APP)
    live = sync_and_wait(services, "hello")
    version = services.store.version("hello")

    queued = request_deployment(services, "hello", repo.head(), "poll")

    assert not queued.new and queued.deployment_id == live.id and "already live" in queued.reason
    assert services.store.version("hello") == version


def test_a_change_already_waiting_is_not_queued_twice(workspace, clean_redis):
    repo, services = workspace.app_with(FUNCTION_APP)
    with Lease(clean_redis, "hello", "someone-else"):       # keeps it waiting
        first = request_deployment(services, "hello", repo.head(), "webhook")
        again = request_deployment(services, "hello", repo.head(), "poll")
    assert again.deployment_id == first.deployment_id and not again.new
    assert event_types(services, "hello").count("DeploymentQueued") == 1


# --- coalescing -------------------------------------------------------------------------

def test_changes_arriving_during_a_deployment_collapse_into_the_newest(workspace, clean_redis):
    repo, services = workspace.app_with(FUNCTION_APP)
    sync_and_wait(services, "hello")
    with Lease(clean_redis, "hello", "a-running-deployment"):
        queued = [request_deployment(services, "hello", repo.commit(change), "poll")
                  for change in (V2, {"extra.txt": "x"}, V3)]
        # a task put back for later (an ETA) shows the worker tried it and met the lease
        wait_for(lambda: any(h.get("eta") for h in deploy_messages(services, queued[-1].deployment_id)),
                 what="the worker to find the app's lease taken")
        statuses = [services.projections.app("hello").deployments[q.deployment_id].status
                    for q in queued]
        assert statuses == ["superseded", "superseded", "pending"]

    newest = wait_until_ended(services, "hello", queued[-1].deployment_id)

    assert newest.status == "success" and deployed_version(workspace) == "v3"
    history = services.projections.app("hello").deployments
    assert history[queued[0].deployment_id].message == f"superseded by {queued[1].deployment_id}"
    assert sum(d.status == "success" for d in history.values()) == 2


# --- lease and fencing ------------------------------------------------------------------

def test_a_holder_whose_lease_expired_cannot_switch_the_target(workspace, clean_redis, tmp_path):
    stale = Lease(clean_redis, "hello", "stale", ttl=30).acquire()
    stale._stop.set()                                   # a worker frozen mid-deployment
    clean_redis.delete(keys.lease("hello"))             # ... whose lease ran out
    (tmp_path / "old").mkdir(), (tmp_path / "new").mkdir()
    with Lease(clean_redis, "hello", "fresh") as fresh:
        with pytest.raises(LeaseLost):      # before the new holder switches: Redis says no
            switch(tmp_path / "site", tmp_path / "old", stale.token, stale.check)
        switch(tmp_path / "site", tmp_path / "new", fresh.token, fresh.check)
    with pytest.raises(Fenced, match="site"):  # after it: the target's own fence says no
        switch(tmp_path / "site", tmp_path / "old", stale.token)

    assert os.readlink(tmp_path / "site") == str(tmp_path / "new")


def test_a_lease_frees_itself_when_its_holder_disappears(clean_redis):
    gone = Lease(clean_redis, "hello", "crashed", ttl=0.3).acquire()
    gone._stop.set()
    time.sleep(0.5)
    with Lease(clean_redis, "hello", "next") as lease:
        assert lease.token > gone.token


# --- retries and permanent failures -----------------------------------------------------

def test_a_source_that_comes_back_is_deployed_after_retries(workspace):
    retry = {"attempts": 6, "base": "200ms", "max": "1s"}
    repo, services = workspace.app_with(FUNCTION_APP, retry=retry)
    sync_and_wait(services, "hello")
    revision = repo.commit(V2)
    away = repo.path.rename(repo.path.with_name("away"))

    queued = request_deployment(services, "hello", revision, "manual")
    wait_for(lambda: "DeploymentRetrying" in event_types(services, "hello"), what="a retry")
    away.rename(repo.path)

    d = wait_until_ended(services, "hello", queued.deployment_id)
    assert d.status == "success" and d.attempts >= 2 and deployed_version(workspace) == "v2"


def test_a_revision_that_does_not_exist_fails_at_once_without_retrying(workspace):
    _, services = workspace.app_with(FUNCTION_APP)

    queued = request_deployment(services, "hello", "0" * 40, "manual")
    d = wait_until_ended(services, "hello", queued.deployment_id)

    assert d.status == "failed" and "not found" in d.message and d.attempts == 1
    assert "DeploymentRetrying" not in event_types(services, "hello")


@pytest.mark.parametrize("files,expected", [
    ({"HttpHello/function.json": '{"bindings": []}'}, "host.json is missing"),
    ({"host.json": "{", "HttpHello/function.json": '{"bindings": []}'}, "host.json: not valid JSON"),
    ({"host.json": "{}", "HttpHello/function.json": '{"disabled": true}'},
     "HttpHello/function.json: must be a JSON object with a 'bindings' list"),
])
def test_an_invalid_function_app_fails_naming_the_file(workspace, files, expected):
    _, services = workspace.app_with(files)
    d = sync_and_wait(services, "hello")
    assert d.status == "failed" and expected in d.message and d.attempts == 1
    assert not workspace.target("hello").exists()


# --- rollback, pause, resume, redeploy, promote ------------------------------------------

def test_rollback_switches_back_at_once_and_the_next_poll_does_not_undo_it(workspace, clean_redis):
    repo, services = workspace.app_with(FUNCTION_APP)
    first = sync_and_wait(services, "hello")
    repo.commit(V2)
    sync_and_wait(services, "hello")

    back = rollback(services, "hello")

    assert (back.status, back.trigger, back.origin, back.release) == (
        "success", "rollback", first.id, first.release)
    assert deployed_version(workspace) == "v1"
    repo.commit(V3)
    poller = Poller(services)
    poller.register()
    assert poller.tick()[0].queued.reason.startswith("app is paused (rolled back to")
    assert deployed_version(workspace) == "v1"

    resumed = resume(services, "hello")
    assert wait_until_ended(services, "hello", resumed.deployment_id).status == "success"
    assert deployed_version(workspace) == "v3"


def test_rollback_to_a_named_deployment_and_refusals_that_name_the_cause(workspace):
    repo, services = workspace.app_with(FUNCTION_APP, keep_releases=1)
    first = sync_and_wait(services, "hello")
    second = sync_and_wait(services, "hello") if repo.commit(V2) else None
    third = sync_and_wait(services, "hello") if repo.commit(V3) else None

    with pytest.raises(Exception, match="no longer kept"):
        rollback(services, "hello", to=first.id)
    assert rollback(services, "hello", to=second.id).release == second.release
    with pytest.raises(Exception, match="did not succeed"):
        rollback(services, "hello", to="nope")
    assert third.status == "success" and deployed_version(workspace) == "v2"


def test_a_paused_app_records_changes_without_deploying_them(workspace):
    repo, services = workspace.app_with(FUNCTION_APP)
    sync_and_wait(services, "hello")
    assert pause(services, "hello") and not pause(services, "hello")

    revision = repo.commit(V2)
    queued = request_deployment(services, "hello", revision, "poll")

    assert queued.deployment_id is None and "paused" in queued.reason
    assert services.projections.app("hello").last_revision == revision
    assert deployed_version(workspace) == "v1"


def test_redeploy_runs_an_earlier_snapshot_again_without_fetching(workspace):
    repo, services = workspace.app_with(FUNCTION_APP)
    first = sync_and_wait(services, "hello")
    repo.commit(V2)
    sync_and_wait(services, "hello")
    repo.path.rename(repo.path.with_name("gone"))       # no fetch could succeed now

    queued = redeploy(services, "hello", first.id)
    d = wait_until_ended(services, "hello", queued.deployment_id)

    assert (d.status, d.trigger, d.snapshot, d.origin) == ("success", "redeploy", first.snapshot, first.id)
    assert d.release != first.release and deployed_version(workspace) == "v1"


def test_promote_deploys_stagings_live_snapshot_to_production_without_rebuilding(workspace):
    repo = workspace.repo()
    repo.commit(FUNCTION_APP)
    repo.checkout("staging", create=True)
    repo.commit(V2)
    services = workspace.configure({
        "staging": git_app(repo, workspace.target("staging"), branch="staging"),
        "production": git_app(repo, workspace.target("production"), branch="master")})
    staged = sync_and_wait(services, "staging")
    sync_and_wait(services, "production")

    queued = promote(services, "staging", "production")
    d = wait_until_ended(services, "production", queued.deployment_id)

    assert (d.status, d.trigger, d.snapshot) == ("success", "promote", staged.snapshot)
    assert d.origin == f"staging/{staged.id}" and deployed_version(workspace, "production") == "v2"
    poller = Poller(services)
    poller.register()
    assert all(r.queued is None for r in poller.tick())     # production's branch did not move


def test_staging_and_production_as_two_folders_of_one_repository(workspace):
    repo = workspace.repo()
    repo.commit({**{f"staging/{k}": v for k, v in {**FUNCTION_APP, **V2}.items()},
                 **{f"production/{k}": v for k, v in FUNCTION_APP.items()}})
    services = workspace.configure({
        "staging": git_app(repo, workspace.target("staging"), path="staging/"),
        "production": git_app(repo, workspace.target("production"), path="production/")})

    sync_and_wait(services, "staging")
    sync_and_wait(services, "production")

    assert deployed_version(workspace, "staging") == "v2"
    assert deployed_version(workspace, "production") == "v1"
    assert tree(workspace.target("production")) == FUNCTION_APP


# --- retention --------------------------------------------------------------------------

def test_old_releases_beyond_keep_releases_are_pruned_and_the_live_one_kept(workspace):
    repo, services = workspace.app_with(FUNCTION_APP, keep_releases=2)
    for n in range(5):
        repo.commit({"n.txt": str(n)})
        last = sync_and_wait(services, "hello")

    folders = sorted(os.listdir(workspace.data_dir / "releases" / "hello"))
    releases = [f for f in folders if not f.startswith(".")]
    view = services.projections.app("hello")
    assert len(releases) == 3 and os.path.basename(last.release) in releases   # live + 2
    assert len(view.pruned) == 2 and "ReleasesPruned" in event_types(services, "hello")
    assert tree(workspace.target("hello"))["n.txt"] == "4"
    # the newest release let go is the spare the next deployment recycles; nothing else is left
    spare = view.deployments[first_let_go(view)].snapshot
    assert [f for f in folders if f.startswith(".spare-")] == [f".spare-{spare}"]
    assert ".trash" not in folders      # each deployment recycled the spare the one before left


def test_a_deployment_recycles_the_spare_release_patched_to_its_own_snapshot(workspace):
    repo, services = workspace.app_with({**FUNCTION_APP, "keep.txt": "same"}, keep_releases=1)
    for n in range(3):
        repo.commit({"n.txt": str(n), **({"gone.txt": "x"} if n == 0 else {})})
        if n == 1:
            repo.commit({"gone.txt": None})
        sync_and_wait(services, "hello")
    releases = workspace.data_dir / "releases" / "hello"
    spare = next(p for p in releases.iterdir() if p.name.startswith(".spare-"))
    inode = spare.stat().st_ino
    repo.commit({"n.txt": "3", "new/deep/file.txt": "new"})

    d = sync_and_wait(services, "hello")

    assert d.status == "success", d.message
    assert os.stat(d.release).st_ino == inode           # the spare, renamed into place
    assert tree(workspace.target("hello")) == {**FUNCTION_APP, "keep.txt": "same", "n.txt": "3",
                                                 "new/deep/file.txt": "new"}
    assert not os.access(d.release, os.W_OK) or os.geteuid() == 0
    assert oct(os.stat(Path(d.release) / "new").st_mode & 0o777) == "0o555"


def first_let_go(view) -> str:
    """The newest deployment whose release retention let go of."""
    pruned = {os.path.basename(r) for r in view.pruned}
    return [d for d in view.deployments if d in pruned][-1]


def test_blobs_only_pruned_releases_used_are_collected_and_redeploy_then_refetches(workspace):
    repo, services = workspace.app_with(FUNCTION_APP, keep_releases=1)
    first = sync_and_wait(services, "hello")
    for change in (V2, V3):
        repo.commit(change)
        sync_and_wait(services, "hello")
    ctx = workspace.worker_context(services)
    v1_blob = ctx.store.manifest(first.snapshot).files["HttpHello/__init__.py"].sha256
    views = [services.projections.app("hello")]     # this test's store holds only its blobs

    manifests, blobs = collect_garbage(ctx.store, kept_snapshots(views), grace=0)

    assert (manifests, blobs) == (1, 1)
    assert not os.path.exists(ctx.store.blob_path(v1_blob))
    assert v1_blob not in {e.sha256 for e in ctx.store.lookup("git-blob", _all_blob_ids(repo)).values()}
    assert tree(workspace.target("hello"))["HttpHello/__init__.py"].endswith("'v3'\n")
    queued = redeploy(services, "hello", first.id)
    assert wait_until_ended(services, "hello", queued.deployment_id).status == "success"
    assert deployed_version(workspace) == "v1"


def _all_blob_ids(repo) -> list[str]:
    from tests.helpers import git
    return git(repo.path, "rev-list", "--objects", "--all").split()


def test_after_promoting_across_folders_the_next_change_deploys_the_right_files(workspace):
    repo = workspace.repo()
    repo.commit({**{f"staging/{k}": v for k, v in {**FUNCTION_APP, "s.txt": "s"}.items()},
                 **{f"production/{k}": v for k, v in FUNCTION_APP.items()}})
    services = workspace.configure({
        "staging": git_app(repo, workspace.target("staging"), path="staging/"),
        "production": git_app(repo, workspace.target("production"), path="production/")})
    sync_and_wait(services, "staging")
    sync_and_wait(services, "production")
    wait_until_ended(services, "production", promote(services, "staging", "production").deployment_id)
    assert "s.txt" in tree(workspace.target("production"))
    repo.commit({"production/p.txt": "p"})

    assert sync_and_wait(services, "production").status == "success"

    assert tree(workspace.target("production")) == {**FUNCTION_APP, "p.txt": "p"}
