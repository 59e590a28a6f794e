"""The local Dropbox fake, driven through the real `dropbox` SDK over HTTPS."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import dropbox
import pytest
import requests
from dropbox.exceptions import ApiError, AuthError, InternalServerError, RateLimitError
from dropbox.files import DeletedMetadata, FileMetadata, FolderMetadata

from orchestrator.sources.cloud_hashes import DropboxContentHash
from tests.servers.fake_dropbox import FakeDropbox


@pytest.fixture(scope="module")
def server():
    with FakeDropbox(page_size=3) as fake:
        yield fake


@pytest.fixture
def fake(server):
    server.reset()
    server.page_size, server.longpoll_scale = 3, 1.0
    return server


def sdk(fake: FakeDropbox, monkeypatch, **options) -> dropbox.Dropbox:
    """The real SDK aimed at the fake.

    The SDK reads DROPBOX_API_*_HOST once, at import, and binds the refresh host as a default
    argument; reloading its modules would re-aim every other test in the process, so this
    overrides the instance's host map and (for this test only) the refresh default instead.
    A separate worker process just gets `fake.hosts` in its environment."""
    api = fake.hosts["DROPBOX_API_HOST"]
    monkeypatch.setattr(dropbox.Dropbox.refresh_access_token, "__defaults__", (api, None))
    options.setdefault("oauth2_access_token", fake.access_token())
    session = dropbox.create_session(ca_certs=fake.ca_bundle)
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (set on these machines) override the
    # session's bundle unless the session ignores the environment.
    session.trust_env = False
    client = dropbox.Dropbox(session=session, **options)
    client._host_map = {"api": api, "content": fake.hosts["DROPBOX_API_CONTENT_HOST"],
                        "notify": fake.hosts["DROPBOX_API_NOTIFY_HOST"]}
    return client


@pytest.fixture
def client(fake, monkeypatch):
    return sdk(fake, monkeypatch)


def entries_of(client, path: str, recursive: bool = True):
    result = client.files_list_folder(path, recursive=recursive)
    entries = list(result.entries)
    while result.has_more:
        result = client.files_list_folder_continue(result.cursor)
        entries += result.entries
    return entries, result.cursor


def entries_of_continue(client, cursor):
    entries, has_more = [], True
    while has_more:
        result = client.files_list_folder_continue(cursor)
        entries += result.entries
        cursor, has_more = result.cursor, result.has_more
    return entries, cursor


def summary(entries) -> list[tuple[str, str]]:
    kinds = {FileMetadata: "file", FolderMetadata: "folder", DeletedMetadata: "deleted"}
    return [(kinds[type(e)], e.path_display) for e in entries]


def digest(data: bytes) -> str:
    h = DropboxContentHash()
    h.update(data)
    return h.hexdigest()


def test_a_recursive_listing_pages_through_the_folder_itself_and_everything_below(fake, client):
    for name in ("a.txt", "b.txt", "Sub/c.txt", "Sub/d.txt"):
        fake.put(f"/Apps/Site/{name}", name.encode())

    first = client.files_list_folder("/apps/site", recursive=True)
    entries, _ = entries_of(client, "/apps/site")

    assert len(first.entries) == 3 and first.has_more
    assert sorted(summary(entries)) == [
        ("file", "/Apps/Site/Sub/c.txt"), ("file", "/Apps/Site/Sub/d.txt"),
        ("file", "/Apps/Site/a.txt"), ("file", "/Apps/Site/b.txt"),
        ("folder", "/Apps/Site"), ("folder", "/Apps/Site/Sub")]
    page_file = next(e for e in entries if e.name == "a.txt")
    assert page_file.id.startswith("id:") and len(page_file.rev) >= 9
    assert page_file.content_hash == digest(b"a.txt") and page_file.size == 5


def test_a_flat_listing_shows_only_direct_children(fake, client):
    fake.put("/site/index.html", b"x")
    fake.put("/site/css/main.css", b"y")

    entries, _ = entries_of(client, "/site", recursive=False)

    assert sorted(summary(entries)) == [("file", "/site/index.html"), ("folder", "/site/css")]


def test_continue_returns_exactly_the_changes_since_the_cursor(fake, client):
    fake.put("/site/keep.txt", b"1")
    fake.put("/site/edit.txt", b"1")
    fake.put("/site/gone.txt", b"1")
    fake.put("/site/old/moved.txt", b"1")
    fake.put("/elsewhere/x.txt", b"1")
    _, cursor = entries_of(client, "/site")
    fake.put("/site/edit.txt", b"2")
    fake.delete("/site/gone.txt")
    fake.move("/site/old/moved.txt", "/site/new/moved.txt")
    fake.put("/site/new.txt", b"3")
    fake.put("/elsewhere/y.txt", b"1")

    changes, _ = entries_of_continue(client, cursor)

    assert summary(changes) == [
        ("file", "/site/edit.txt"), ("deleted", "/site/gone.txt"),
        ("folder", "/site/new"), ("deleted", "/site/old/moved.txt"),
        ("file", "/site/new/moved.txt"), ("file", "/site/new.txt")]
    assert changes[0].content_hash == digest(b"2")


def test_a_deleted_folder_comes_back_as_one_deleted_entry(fake, client):
    fake.put("/site/docs/a.txt", b"a")
    fake.put("/site/docs/b.txt", b"b")
    cursor = client.files_list_folder_get_latest_cursor("/site", recursive=True).cursor

    fake.delete("/site/docs")

    changes, cursor = entries_of_continue(client, cursor)
    assert summary(changes) == [("deleted", "/site/docs")]
    assert entries_of_continue(client, cursor)[0] == []


def test_a_moved_folder_is_deleted_at_its_old_path_and_listed_whole_at_the_new_one(fake, client):
    fake.put("/site/v1/a.txt", b"a")
    fake.put("/site/v1/img/b.png", b"b")
    before = client.files_get_metadata("/site/v1/a.txt")
    cursor = client.files_list_folder_get_latest_cursor("/site", recursive=True).cursor

    fake.move("/site/v1", "/site/live/V2")

    changes, _ = entries_of_continue(client, cursor)
    assert summary(changes) == [
        ("folder", "/site/live"), ("deleted", "/site/v1"), ("folder", "/site/live/V2"),
        ("file", "/site/live/V2/a.txt"), ("folder", "/site/live/V2/img"),
        ("file", "/site/live/V2/img/b.png")]
    assert changes[3].id == before.id


def test_a_missing_path_is_a_path_not_found_route_error(fake, client):
    with pytest.raises(ApiError) as listing:
        client.files_list_folder("/nowhere")
    with pytest.raises(ApiError) as download:
        client.files_download("/nowhere.txt")

    assert listing.value.error.get_path().is_not_found()
    assert download.value.error.get_path().is_not_found()


def test_invalidated_cursors_answer_reset(fake, client):
    fake.put("/site/a.txt", b"a")
    _, cursor = entries_of(client, "/site")

    fake.invalidate_cursors()

    with pytest.raises(ApiError) as continued:
        client.files_list_folder_continue(cursor)
    with pytest.raises(ApiError) as polled:
        client.files_list_folder_longpoll(cursor)
    assert continued.value.error.is_reset() and polled.value.error.is_reset()


def test_download_returns_the_bytes_and_their_metadata_by_path_id_and_rev(fake, client):
    fake.put("/site/Café.txt", b"first")
    old = client.files_get_metadata("/site/café.txt")
    fake.put("/site/café.txt", b"second")

    by_path, body = client.files_download("/SITE/CAFÉ.TXT")
    _, by_id = client.files_download(old.id)
    _, by_rev = client.files_download("rev:" + old.rev)

    assert body.content == by_id.content == b"second" and by_rev.content == b"first"
    assert by_path.path_display == "/site/Café.txt" and by_path.id == old.id
    assert by_path.content_hash == digest(b"second") and by_path.rev != old.rev
    assert fake.downloads == ["/site/Café.txt"] * 3
    assert fake.hosts_seen["files/download"] == "content"


def test_rate_limiting_raises_rate_limit_error_carrying_retry_after(fake, monkeypatch):
    client = sdk(fake, monkeypatch, max_retries_on_rate_limit=0)
    fake.fail_next("files/list_folder", 429, retry_after=7)

    with pytest.raises(RateLimitError) as limited:
        client.files_list_folder("")

    assert limited.value.backoff == 7 and limited.value.error.reason.is_too_many_requests()


def test_the_sdk_retries_after_a_rate_limit_and_then_succeeds(fake, client):
    fake.fail_next("files/list_folder", 429, retry_after=0, times=2)

    assert client.files_list_folder("").entries == []
    assert fake.requests["files/list_folder"] == 3


def test_server_errors_answer_plain_text(fake, monkeypatch):
    client = sdk(fake, monkeypatch, max_retries_on_error=0)
    fake.fail_next("files/download", 503)
    fake.put("/a.txt", b"a")

    with pytest.raises(InternalServerError) as failed:
        client.files_download("/a.txt")

    assert failed.value.status_code == 503 and failed.value.body == "Service Unavailable"
    assert client.files_download("/a.txt")[1].content == b"a"


def test_an_expired_access_token_is_refreshed_transparently(fake, monkeypatch):
    client = sdk(fake, monkeypatch, oauth2_refresh_token=fake.refresh_token,
                 app_key=fake.app_key, app_secret=fake.app_secret,
                 oauth2_access_token_expiration=datetime.utcnow() + timedelta(hours=1))
    client.files_list_folder("")

    fake.expire_access_tokens()

    assert client.files_list_folder("").entries == []
    assert fake.requests["oauth2/token"] == 1 and fake.requests["files/list_folder"] == 3


def test_a_wrong_refresh_token_is_an_invalid_grant(fake, monkeypatch):
    client = sdk(fake, monkeypatch, oauth2_access_token=None, oauth2_refresh_token="nope",
                 app_key=fake.app_key, app_secret=fake.app_secret)

    with pytest.raises(AuthError) as refused:
        client.files_list_folder("")

    assert refused.value.error.is_invalid_access_token()


def test_the_token_endpoint_also_accepts_the_app_in_http_basic_auth(fake):
    answer = requests.post(f"https://{fake.hosts['DROPBOX_API_HOST']}/oauth2/token",
                           data={"grant_type": "refresh_token", "refresh_token": fake.refresh_token},
                           auth=(fake.app_key, fake.app_secret), verify=fake.ca_bundle, timeout=5)

    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json()["token_type"] == "bearer" and answer.json()["expires_in"] == 14400


def test_an_unknown_access_token_is_refused(fake, monkeypatch):
    client = sdk(fake, monkeypatch, oauth2_access_token="forged")

    with pytest.raises(AuthError) as refused:
        client.files_list_folder("")

    assert refused.value.error.is_invalid_access_token()


def test_longpoll_on_the_notify_host_wakes_up_soon_after_a_change(fake, client):
    fake.put("/site/a.txt", b"a")
    cursor = client.files_list_folder_get_latest_cursor("/site", recursive=True).cursor
    fake.longpoll_scale, fake.longpoll_backoff = 0.2, 5          # at most 6 s
    threading.Timer(0.2, fake.put, ("/site/b.txt", b"b")).start()

    started = time.monotonic()
    answer = client.files_list_folder_longpoll(cursor, timeout=30)

    assert answer.changes and answer.backoff == 5 and time.monotonic() - started < 3
    assert fake.hosts_seen["files/list_folder/longpoll"] == "notify"


def test_longpoll_answers_no_changes_after_its_scaled_timeout(fake, client):
    cursor = client.files_list_folder_get_latest_cursor("").cursor
    fake.longpoll_scale = 0.01

    started = time.monotonic()
    answer = client.files_list_folder_longpoll(cursor, timeout=30)

    assert not answer.changes and answer.backoff is None
    assert 0.25 < time.monotonic() - started < 2


def test_longpoll_ignores_changes_outside_the_cursors_folder(fake, client):
    fake.put("/site/a.txt", b"a")
    cursor = client.files_list_folder_get_latest_cursor("/site").cursor
    fake.longpoll_scale = 0.01
    fake.put("/elsewhere/b.txt", b"b")

    assert not client.files_list_folder_longpoll(cursor, timeout=30).changes


def test_routes_sent_to_the_wrong_host_are_refused(fake):
    url = f"https://{fake.hosts['DROPBOX_API_HOST']}/2/files/download"
    answer = requests.post(url, headers={"Authorization": f"Bearer {fake.access_token()}",
                                         "Dropbox-API-Arg": '{"path": "/a"}'},
                           verify=fake.ca_bundle, timeout=5)

    assert answer.status_code == 400 and "content host" in answer.text
    assert fake.hosts_seen["files/download"] == "api"


def test_reset_forgets_files_counters_failures_and_cursors(fake, client):
    fake.put("/a.txt", b"a")
    _, cursor = entries_of(client, "")
    fake.fail_next("files/list_folder", 500)

    fake.reset()

    assert fake.requests == {} and fake.downloads == [] and fake.hosts_seen == {}
    assert client.files_list_folder("").entries == []
    with pytest.raises(ApiError) as stale:
        client.files_list_folder_continue(cursor)
    assert stale.value.error.is_reset()
