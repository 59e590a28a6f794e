"""OneDrive folders end to end: real MSAL and requests against the session's fake Microsoft
Graph and sign-in authority over HTTPS, the session's Redis and Celery worker."""
from __future__ import annotations

import json

import pytest

from orchestrator.deploying.dispatch import request_deployment
from tests.helpers import CLOUD_FUNCIGNORE, CLOUD_NEVER_DEPLOYED, CLOUD_SITE
from tests.integration.flow import site_files, sync_and_wait, wait_until_ended


@pytest.fixture
def graph(cloud_fakes):
    fake = cloud_fakes[1]
    fake.reset()
    return fake


def business_app(workspace, fake, **source) -> dict:
    """App-only sign-in to a business drive: Graph gives quickXorHash only there."""
    return {"site": {"layout": "site", "target": str(workspace.target("site")), "source": {
        "type": "onedrive", "path": "apps/site", "tenant": "contoso.onmicrosoft.com",
        "client_id": fake.client_id, "client_secret": fake.client_secret,
        "drive_id": fake.business_drive_id, "authority_host": fake.base_url,
        "graph_url": fake.graph_url, "poll_interval": "1h", **source}}}


def personal_app(workspace, fake, refresh_token: str, **source) -> dict:
    return {"site": {"layout": "site", "target": str(workspace.target("site")), "source": {
        "type": "onedrive", "path": "apps/site", "tenant": "consumers", "client_id": fake.client_id,
        "refresh_token": refresh_token, "authority_host": fake.base_url,
        "graph_url": fake.graph_url, "poll_interval": "1h", **source}}}


def put_site(fake, drive: str, files: dict = CLOUD_SITE) -> None:
    for name, content in files.items():
        fake.put(drive, f"apps/site/{name}", content)


def test_a_business_folder_deploys_and_a_change_downloads_only_that_file(workspace, graph):
    drive = graph.business_drive_id
    put_site(graph, drive)
    graph.put(drive, "elsewhere/other.txt", b"not deployed")
    services = workspace.configure(business_app(workspace, graph))
    first = sync_and_wait(services, "site")
    downloaded = list(graph.downloads)

    graph.put(drive, "apps/site/index.html", b"<h1>v2</h1>")
    graph.delete(drive, "apps/site/js")
    second = sync_and_wait(services, "site")

    assert first.status == second.status == "success"
    assert sorted(downloaded) == sorted(f"apps/site/{n}" for n in CLOUD_SITE)
    assert graph.downloads[len(downloaded):] == ["apps/site/index.html"]
    assert site_files(workspace) == {"index.html": b"<h1>v2</h1>", "css/site.css": b"body {}"}
    assert set(graph.token_grants) == {"client_credentials"}


def test_local_settings_and_funcignored_files_never_leave_onedrive_until_the_rules_let_them(workspace, graph):
    """The rules are read before anything else is fetched: a file they exclude is never
    downloaded, and once a changed .funcignore lets it in, it is."""
    drive = graph.business_drive_id
    put_site(graph, drive, {**CLOUD_SITE, **CLOUD_NEVER_DEPLOYED, ".funcignore": CLOUD_FUNCIGNORE})
    services = workspace.configure(business_app(workspace, graph))
    first = sync_and_wait(services, "site")
    graph.put(drive, "apps/site/local.settings.json", b'{"Values": {}}')
    graph.put(drive, "apps/site/index.html", b"<h1>v2</h1>")
    second = sync_and_wait(services, "site")
    before_rules_changed = list(graph.downloads)
    graph.put(drive, "apps/site/.funcignore", b"*.log\n")
    third = sync_and_wait(services, "site")

    assert first.status == second.status == third.status == "success"
    assert sorted(before_rules_changed) == sorted(
        f"apps/site/{n}" for n in [*CLOUD_SITE, ".funcignore", "index.html"])
    assert sorted(graph.downloads[len(before_rules_changed):]) == [
        "apps/site/.funcignore", "apps/site/drafts/plan.html"]
    assert site_files(workspace) == {**CLOUD_SITE, "index.html": b"<h1>v2</h1>", ".funcignore": b"*.log\n",
                                     "drafts/plan.html": CLOUD_NEVER_DEPLOYED["drafts/plan.html"]}


def test_a_renamed_folder_moves_its_files_without_downloading_them(workspace, graph):
    drive = graph.business_drive_id
    put_site(graph, drive)
    services = workspace.configure(business_app(workspace, graph))
    sync_and_wait(services, "site")
    graph.move(drive, "apps/site/css", "apps/site/styles")
    d = sync_and_wait(services, "site")
    assert d.status == "success" and len(graph.downloads) == 3
    assert site_files(workspace)["styles/site.css"] == b"body {}" and "css/site.css" not in site_files(workspace)


def test_a_personal_drive_signs_in_with_a_refresh_token_kept_in_the_msal_cache(workspace, graph):
    drive = graph.personal_drive_id
    put_site(graph, drive)
    services = workspace.configure(personal_app(workspace, graph, graph.issue_refresh_token()))
    assert sync_and_wait(services, "site").status == "success"
    graph.put(drive, "apps/site/index.html", b"<h1>v2</h1>")
    graph.expire_access_tokens()
    d = sync_and_wait(services, "site")
    assert d.status == "success" and site_files(workspace)["index.html"] == b"<h1>v2</h1>"
    # The configured refresh token was redeemed once per process; after that MSAL's cache
    # (on disk under data_dir) signed in again by itself.
    caches = list((workspace.data_dir / "cache" / "onedrive").glob("*.msal.json"))
    assert caches and oct(caches[0].stat().st_mode & 0o777) == "0o600"
    assert "RefreshToken" in caches[0].read_text()


def test_a_resync_request_enumerates_again_and_reconciles_deletions(workspace, graph):
    drive = graph.business_drive_id
    put_site(graph, drive)
    services = workspace.configure(business_app(workspace, graph))
    sync_and_wait(services, "site")
    graph.delete(drive, "apps/site/css/site.css")
    graph.put(drive, "apps/site/index.html", b"<h1>after resync</h1>")
    graph.require_resync()
    d = sync_and_wait(services, "site")
    assert d.status == "success"
    assert site_files(workspace) == {"index.html": b"<h1>after resync</h1>", "js/app.js": b"go()"}


def test_throttling_is_waited_out_per_retry_after(workspace, graph):
    put_site(graph, graph.business_drive_id)
    services = workspace.configure(business_app(workspace, graph))
    graph.fail_next("delta", 429, retry_after=1)
    graph.fail_next("content", 503, retry_after=1)
    d = sync_and_wait(services, "site", timeout=60)
    assert d.status == "success" and site_files(workspace) == CLOUD_SITE


def test_names_that_differ_only_by_unicode_normalisation_fail_naming_both(workspace, graph):
    """The cloud keeps 'café' typed on Windows (NFC) and on a Mac (NFD) apart; a release
    would hold two look-alike files, and a case- or normalisation-insensitive disk one."""
    drive = graph.personal_drive_id
    put_site(graph, drive)
    services = workspace.configure(personal_app(workspace, graph, graph.issue_refresh_token()))
    sync_and_wait(services, "site")
    graph.put(drive, "apps/site/caf\u00e9.txt", b"nfc")
    graph.put(drive, "apps/site/Cafe\u0301.txt", b"nfd")
    d = sync_and_wait(services, "site")
    assert d.status == "failed" and "differ only by case" in d.message
    assert "caf\u00e9.txt" in d.message and "Cafe\u0301.txt" in d.message
    assert site_files(workspace) == CLOUD_SITE


def test_a_refused_client_secret_fails_without_naming_it(workspace, graph):
    put_site(graph, graph.business_drive_id)
    services = workspace.configure(business_app(workspace, graph, client_secret="wr0ng-secret"))
    queued = request_deployment(services, "site", "f" * 40, "manual")
    d = wait_until_ended(services, "site", queued.deployment_id)
    assert d.status == "failed" and "sign-in was refused" in d.message
    assert "wr0ng-secret" not in json.dumps([r.event.to_fields() for r in services.store.read("site")])
