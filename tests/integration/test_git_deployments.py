"""A Git change goes live end to end: real redis-server, real Celery worker, real git."""
from __future__ import annotations

import os
import stat

from orchestrator.deploying.dispatch import request_deployment
from orchestrator.observe.formatting import change_text
from orchestrator.triggers.poller import Poller
from tests.helpers import FUNCTION_APP, git_app
from tests.integration.flow import event_types, sync_and_wait, tree, wait_until_ended


def test_first_deployment_makes_the_target_a_symlink_to_a_release_holding_the_commit(workspace):
    repo = workspace.repo()
    revision = repo.commit(FUNCTION_APP)
    services = workspace.configure({"hello": git_app(repo, workspace.target("hello"))})

    d = sync_and_wait(services, "hello")

    assert d.status == "success" and d.revision == revision
    target = workspace.target("hello")
    assert target.is_symlink() and os.readlink(target) == d.release
    assert tree(target) == FUNCTION_APP
    assert event_types(services, "hello") == [
        "ChangeDetected", "DeploymentQueued", "DeploymentStarted", "SnapshotBuilt",
        "DeploymentSwitched", "DeploymentSucceeded"]


def test_a_second_commit_deploys_a_new_release_and_leaves_the_old_one_intact(workspace):
    repo, services = workspace.app_with(FUNCTION_APP)
    first = sync_and_wait(services, "hello")
    repo.commit({"HttpHello/__init__.py": "def main(req):\n    return 'v2'\n", "extra.txt": "new"})

    second = sync_and_wait(services, "hello")

    assert second.status == "success" and second.release != first.release
    live = tree(workspace.target("hello"))
    assert live["HttpHello/__init__.py"].endswith("'v2'\n") and live["extra.txt"] == "new"
    assert tree(first.release) == FUNCTION_APP
    assert services.projections.app("hello").active_deployment == second.id


def test_a_one_file_commit_touches_only_that_file_in_the_snapshot(workspace):
    static = {f"static/{i}.txt": f"file {i}" for i in range(50)}
    repo, services = workspace.app_with({**FUNCTION_APP, **static})
    sync_and_wait(services, "hello")
    repo.commit({"static/7.txt": "changed", "static/8.txt": None})

    sync_and_wait(services, "hello")

    built = [r.event for r in services.store.read("hello") if r.event.type == "SnapshotBuilt"]
    assert built[-1].incremental and (built[-1].blobs_added, built[-1].blobs_reused) == (1, 0)
    live = tree(workspace.target("hello"))
    assert len(live) == 52 and live["static/7.txt"] == "changed" and "static/8.txt" not in live


def test_a_new_app_on_a_known_repository_reads_no_content_again(workspace):
    repo, services = workspace.app_with(FUNCTION_APP)
    sync_and_wait(services, "hello")
    services = workspace.configure({
        "hello": git_app(repo, workspace.target("hello")),
        "copy": git_app(repo, workspace.target("copy"))})

    sync_and_wait(services, "copy")

    built = [r.event for r in services.store.read("copy") if r.event.type == "SnapshotBuilt"]
    assert not built[0].incremental and (built[0].blobs_added, built[0].blobs_reused) == (0, 3)
    assert tree(workspace.target("copy")) == FUNCTION_APP


def test_changing_the_funcignore_file_re_evaluates_every_file(workspace):
    repo, services = workspace.app_with({**FUNCTION_APP, ".funcignore": "*.md\n", "a.md": "doc"})
    sync_and_wait(services, "hello")
    assert "a.md" not in tree(workspace.target("hello"))
    repo.commit({".funcignore": "*.txt\n"})

    sync_and_wait(services, "hello")

    assert tree(workspace.target("hello"))["a.md"] == "doc"


def test_syncing_without_a_change_is_recorded_as_skipped_and_keeps_the_live_release(workspace):
    repo, services = workspace.app_with(FUNCTION_APP)
    first = sync_and_wait(services, "hello")

    again = sync_and_wait(services, "hello")

    assert again.status == "skipped" and "already live" in again.message
    assert os.readlink(workspace.target("hello")) == first.release
    assert services.projections.app("hello").active_deployment == first.id


def test_commits_to_a_branch_other_than_the_tracked_one_are_not_deployed(workspace, clean_redis):
    repo, services = workspace.app_with(FUNCTION_APP)
    poller = Poller(services)
    poller.register()
    first = poller.tick()[0].queued
    wait_until_ended(services, "hello", first.deployment_id)
    repo.checkout("feature", create=True)
    repo.commit({"host.json": '{"version": "2.0", "feature": true}'})

    clean_redis.zadd("sluice:poll:due", {"hello": 0})
    results = poller.tick()

    assert results[0].queued is None and results[0].error is None
    assert len(services.projections.app("hello").deployments) == 1


def test_a_poll_that_finds_a_new_commit_queues_and_deploys_it(workspace, clean_redis):
    repo, services = workspace.app_with(FUNCTION_APP)
    poller = Poller(services)
    poller.register()
    wait_until_ended(services, "hello", poller.tick()[0].queued.deployment_id)
    revision = repo.commit({"host.json": '{"version": "2.0", "n": 2}'})

    clean_redis.zadd("sluice:poll:due", {"hello": 0})
    queued = poller.tick()[0].queued
    d = wait_until_ended(services, "hello", queued.deployment_id)

    assert (d.status, d.revision, d.trigger) == ("success", revision, "poll")
    assert '"n": 2' in (workspace.target("hello") / "host.json").read_text()


def test_two_apps_on_one_repository_track_two_branches(workspace):
    repo = workspace.repo()
    repo.commit({**FUNCTION_APP, "host.json": '{"version": "2.0", "env": "production"}'})
    repo.checkout("staging", create=True)
    repo.commit({"host.json": '{"version": "2.0", "env": "staging"}'})
    services = workspace.configure({
        "prod": git_app(repo, workspace.target("prod"), branch="master"),
        "staging": git_app(repo, workspace.target("staging"), branch="staging")})

    sync_and_wait(services, "prod")
    sync_and_wait(services, "staging")

    assert "production" in (workspace.target("prod") / "host.json").read_text()
    assert "staging" in (workspace.target("staging") / "host.json").read_text()


def test_a_path_subfolder_deploys_only_that_folder(workspace):
    repo = workspace.repo()
    repo.commit({"README.md": "monorepo", "api/host.json": '{"version": "2.0"}',
                 "api/Fn/function.json": '{"bindings": []}', "web/index.html": "<p>"})
    services = workspace.configure({"api": git_app(repo, workspace.target("api"), path="api/")})

    d = sync_and_wait(services, "api")

    assert d.status == "success"
    assert set(tree(workspace.target("api"))) == {"host.json", "Fn/function.json"}


def test_local_settings_git_folders_and_funcignore_patterns_are_never_deployed(workspace):
    repo = workspace.repo()
    repo.commit({**FUNCTION_APP, "local.settings.json": '{"Values": {"SECRET": "x"}}',
                 ".funcignore": "*.log\ntests/\n", "debug.log": "noise",
                 "tests/test_it.py": "assert True", "HttpHello/local.settings.json": "{}"})
    services = workspace.configure({"hello": git_app(repo, workspace.target("hello"))})

    sync_and_wait(services, "hello")

    assert set(tree(workspace.target("hello"))) == set(FUNCTION_APP) | {".funcignore"}


def test_released_files_and_folders_are_read_only(workspace):
    repo, services = workspace.app_with(FUNCTION_APP)

    release = sync_and_wait(services, "hello").release

    for root, _dirs, files in os.walk(release):
        assert stat.S_IMODE(os.stat(root).st_mode) == 0o555
        for name in files:
            assert stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode) == 0o444


def test_an_invalid_function_app_fails_naming_the_file_and_the_live_site_is_untouched(workspace):
    repo, services = workspace.app_with(FUNCTION_APP)
    good = sync_and_wait(services, "hello")
    repo.commit({"HttpHello/function.json": "{not json"})

    bad = sync_and_wait(services, "hello")

    assert bad.status == "failed" and "HttpHello/function.json" in bad.message
    assert os.readlink(workspace.target("hello")) == good.release
    assert tree(workspace.target("hello")) == FUNCTION_APP


def test_a_symlink_leaving_the_tree_fails_the_deployment_and_writes_nothing(workspace):
    repo = workspace.repo()
    repo.commit(FUNCTION_APP)
    (repo.path / "escape").symlink_to("../../../etc")
    repo.commit({})
    services = workspace.configure({"hello": git_app(repo, workspace.target("hello"))})

    d = sync_and_wait(services, "hello")

    assert d.status == "failed" and "'escape'" in d.message
    assert not workspace.target("hello").exists()


def test_a_site_layout_deploys_without_function_app_checks(workspace):
    _, services = workspace.app_with({"index.html": "<h1>hi</h1>"}, name="site", layout="site")

    assert sync_and_wait(services, "site").status == "success"
    assert tree(workspace.target("site")) == {"index.html": "<h1>hi</h1>"}


def test_an_unreachable_source_is_retried_then_fails_and_the_site_stays_as_it_was(workspace):
    repo = workspace.repo()
    repo.commit(FUNCTION_APP)
    retry = {"attempts": 3, "base": "50ms", "max": "100ms"}
    services = workspace.configure({"hello": git_app(repo, workspace.target("hello"), retry=retry)})
    good = sync_and_wait(services, "hello")
    revision = repo.commit({"host.json": '{"version": "2.0", "n": 2}'})
    repo.path.rename(repo.path.with_name("moved"))

    queued = request_deployment(services, "hello", revision, "manual")
    d = wait_until_ended(services, "hello", queued.deployment_id)

    assert d.status == "failed" and "gave up after 3 attempts" in d.message, d.message
    assert event_types(services, "hello").count("DeploymentRetrying") == 2
    assert os.readlink(workspace.target("hello")) == good.release


def test_lock_files_left_in_the_mirror_by_a_killed_git_are_cleared_not_left_for_a_person(workspace):
    repo, services = workspace.app_with(FUNCTION_APP)
    repo.through_a_mirror()
    sync_and_wait(services, "hello")
    mirror = next((workspace.data_dir / "cache" / "git").glob("*.git"))
    (mirror / "packed-refs.lock").write_text("")
    (mirror / "refs" / "heads").mkdir(parents=True, exist_ok=True)
    (mirror / "refs" / "heads" / "master.lock").write_text("")
    repo.commit({"HttpHello/extra.txt": "after a crash\n"})
    d = sync_and_wait(services, "hello")
    assert d.status == "success" and not list(mirror.rglob("*.lock"))


def test_a_deployment_the_disk_refuses_fails_naming_the_step_and_the_path(workspace):
    _, services = workspace.app_with(FUNCTION_APP, retry={"attempts": 2, "base": "100ms", "max": "200ms"})
    blocked = workspace.data_dir / "releases" / "hello"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where the app's releases go")     # as the OS refuses a full disk

    d = sync_and_wait(services, "hello")

    assert d.status == "failed" and "materialise" in d.message and str(blocked) in d.message
    assert "unexpected" not in d.message


def test_the_history_records_who_made_the_deployed_commit_and_why(workspace):
    repo = workspace.repo()
    repo.commit(FUNCTION_APP, "Say hello\n\nThe first function of the app.")
    services = workspace.configure({"hello": git_app(repo, workspace.target("hello"))})

    d = sync_and_wait(services, "hello")

    assert (d.author, d.author_email) == ("Test", "test@localhost")
    assert d.commit_message == "Say hello\n\nThe first function of the app."
    assert change_text(d) == "Say hello (Test)"
