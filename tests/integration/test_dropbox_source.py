"""Dropbox folders end to end: the real dropbox SDK against the session's fake Dropbox over
HTTPS, the session's Redis and Celery worker."""
from __future__ import annotations

import json
import threading

import pytest

from orchestrator.core import keys
from orchestrator.triggers.poller import Poller
from tests.helpers import CLOUD_FUNCIGNORE, CLOUD_NEVER_DEPLOYED, CLOUD_SITE, wait_for
from tests.integration.flow import site_files, sync_and_wait

ROOT = "/Apps/Site"


@pytest.fixture
def dbx(cloud_fakes):
    fake = cloud_fakes[0]
    fake.reset()
    fake.longpoll_scale = 1.0
    for name, content in CLOUD_SITE.items():
        fake.put(f"{ROOT}/{name}", content)
    return fake


def dropbox_app(workspace, fake, **source) -> dict:
    return {"site": {"layout": "site", "target": str(workspace.target("site")), "source": {
        "type": "dropbox", "path": ROOT, "app_key": fake.app_key, "app_secret": fake.app_secret,
        "refresh_token": fake.refresh_token, "poll_interval": "1h", **source}}}


def test_a_folder_deploys_and_later_changes_download_only_the_changed_file(workspace, dbx):
    services = workspace.configure(dropbox_app(workspace, dbx))
    first = sync_and_wait(services, "site")
    downloaded = len(dbx.downloads)

    dbx.put(f"{ROOT}/index.html", b"<h1>v2</h1>")
    dbx.delete(f"{ROOT}/js")
    second = sync_and_wait(services, "site")

    assert first.status == second.status == "success"
    assert downloaded == 3 and dbx.downloads[3:] == [f"{ROOT}/index.html"]
    assert site_files(workspace) == {"index.html": b"<h1>v2</h1>", "css/site.css": b"body {}"}
    assert dbx.requests["files/list_folder"] == 2      # one full listing each: poller, worker


def test_local_settings_and_funcignored_files_never_leave_dropbox_on_any_deployment(workspace, dbx):
    """local.settings.json holds connection strings: what no release holds is not fetched
    into the store either, neither on the first deployment nor on later ones."""
    dbx.put(f"{ROOT}/.funcignore", CLOUD_FUNCIGNORE)
    for name, content in CLOUD_NEVER_DEPLOYED.items():
        dbx.put(f"{ROOT}/{name}", content)
    services = workspace.configure(dropbox_app(workspace, dbx))
    first = sync_and_wait(services, "site")
    for name, content in CLOUD_NEVER_DEPLOYED.items():
        dbx.put(f"{ROOT}/{name}", content + b" changed")
    dbx.put(f"{ROOT}/drafts/next.html", b"<h1>next</h1>")
    dbx.put(f"{ROOT}/index.html", b"<h1>v2</h1>")
    second = sync_and_wait(services, "site")

    assert first.status == second.status == "success"
    assert sorted(dbx.downloads) == sorted(f"{ROOT}/{n}" for n in [*CLOUD_SITE, ".funcignore", "index.html"])
    assert site_files(workspace) == {**CLOUD_SITE, ".funcignore": CLOUD_FUNCIGNORE, "index.html": b"<h1>v2</h1>"}


def test_a_file_already_in_the_store_is_not_downloaded_again(workspace, dbx):
    services = workspace.configure(dropbox_app(workspace, dbx))
    sync_and_wait(services, "site")
    dbx.put(f"{ROOT}/copy-of-css.css", b"body {}")
    dbx.move(f"{ROOT}/index.html", f"{ROOT}/home.html")
    d = sync_and_wait(services, "site")
    assert d.status == "success" and len(dbx.downloads) == 3
    assert site_files(workspace)["home.html"] == b"<h1>v1</h1>" and "index.html" not in site_files(workspace)


def test_a_reset_cursor_lists_the_folder_again_and_still_deploys_the_right_files(workspace, dbx):
    services = workspace.configure(dropbox_app(workspace, dbx))
    sync_and_wait(services, "site")
    dbx.invalidate_cursors()
    dbx.put(f"{ROOT}/index.html", b"<h1>after reset</h1>")
    dbx.delete(f"{ROOT}/css/site.css")
    d = sync_and_wait(services, "site")
    assert d.status == "success"
    assert site_files(workspace) == {"index.html": b"<h1>after reset</h1>", "js/app.js": b"go()"}


def test_rate_limits_server_errors_and_an_expired_token_are_ridden_out(workspace, dbx):
    services = workspace.configure(dropbox_app(workspace, dbx))
    dbx.fail_next("files/download", 429, retry_after=1)
    dbx.fail_next("files/list_folder", 503)
    dbx.expire_access_tokens()
    d = sync_and_wait(services, "site", timeout=60)
    assert d.status == "success" and site_files(workspace) == CLOUD_SITE
    assert dbx.requests["oauth2/token"] >= 1


def test_wrong_credentials_fail_the_deployment_naming_dropbox_and_no_secret(workspace, dbx):
    services = workspace.configure(dropbox_app(workspace, dbx))
    sync_and_wait(services, "site")
    from orchestrator.deploying.dispatch import request_deployment
    from tests.integration.flow import wait_until_ended
    services = workspace.configure(dropbox_app(workspace, dbx, refresh_token="revoked-t0ken"))
    queued = request_deployment(services, "site", "f" * 40, "manual")
    d = wait_until_ended(services, "site", queued.deployment_id)
    assert d.status == "failed" and "dropbox /apps/site" in d.message.lower()
    assert "revoked-t0ken" not in json.dumps([r.event.to_fields() for r in services.store.read("site")])


def test_a_hostile_name_fails_the_deployment_naming_it_and_the_live_site_stays(workspace, dbx):
    services = workspace.configure(dropbox_app(workspace, dbx))
    sync_and_wait(services, "site")
    dbx.put(f"{ROOT}/a/../../escape.txt", b"owned")
    d = sync_and_wait(services, "site")
    assert d.status == "failed" and "escape.txt" in d.message and "'..'" in d.message
    assert site_files(workspace) == CLOUD_SITE
    assert not (workspace.root / "sites" / "escape.txt").exists()


def test_a_longpolled_change_goes_live_without_waiting_for_the_poll_interval(workspace, dbx):
    services = workspace.configure(dropbox_app(workspace, dbx))
    poller, stop = Poller(services), threading.Event()
    thread = threading.Thread(target=poller.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: site_or_none(workspace) == CLOUD_SITE, timeout=30, what="the first deployment")
        wait_for(lambda: dbx.requests["files/list_folder/longpoll"] >= 1, what="a longpoll")
        dbx.put(f"{ROOT}/index.html", b"<h1>pushed</h1>")
        wait_for(lambda: (site_or_none(workspace) or {}).get("index.html") == b"<h1>pushed</h1>",
                 timeout=15, what="the change to go live")
    finally:
        stop.set()
        thread.join(10)
    assert dbx.hosts_seen["files/list_folder/longpoll"] == "notify"
    history = services.projections.history("site")
    assert [d.trigger for d in history.deployments.values()] == ["poll", "poll"]


def test_a_cursor_reset_met_by_the_longpoll_makes_the_app_due_at_once_and_lists_afresh(workspace, dbx):
    """Dropbox may reset a cursor at any time; a longpoll on it answers 409 `reset`, which
    means "list the folder again", not "try again later"."""
    services = workspace.configure(dropbox_app(workspace, dbx))
    sync_and_wait(services, "site")
    services.redis.zadd(keys.POLL_DUE, {"site": services.clock.now() + 3600})   # no poll soon
    dbx.invalidate_cursors()            # before any longpoll waits: it meets `reset`
    dbx.put(f"{ROOT}/index.html", b"<h1>after reset</h1>")
    listings = dbx.requests["files/list_folder"]
    poller, stop = Poller(services), threading.Event()
    thread = threading.Thread(target=poller.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: site_files(workspace).get("index.html") == b"<h1>after reset</h1>",
                 timeout=15, what="the change to go live after the reset")
    finally:
        stop.set()
        thread.join(10)
    assert dbx.requests["files/list_folder"] > listings      # listed afresh, not continued
    assert [d.trigger for d in services.projections.history("site").deployments.values()] == [
        "manual", "poll"]


def test_the_worker_reports_download_progress_for_the_progress_bar(workspace, dbx):
    for i in range(40):
        dbx.put(f"{ROOT}/many/file-{i}.txt", f"content {i}".encode())
    services = workspace.configure(dropbox_app(workspace, dbx))
    d = sync_and_wait(services, "site")
    progress = services.redis.hgetall(keys.progress(d.id))
    assert d.status == "success" and progress == {b"done": b"43", b"total": b"43"}


def site_or_none(workspace):
    try:
        return site_files(workspace)
    except OSError:
        return None


def test_a_plain_access_token_is_accepted_instead_of_a_refresh_token(workspace, dbx):
    app = dropbox_app(workspace, dbx)
    for key in ("app_key", "app_secret", "refresh_token"):
        del app["site"]["source"][key]
    app["site"]["source"]["access_token"] = dbx.access_token()
    services = workspace.configure(app)
    assert sync_and_wait(services, "site").status == "success" and site_files(workspace) == CLOUD_SITE
