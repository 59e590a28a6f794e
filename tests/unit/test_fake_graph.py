"""The fake Microsoft Graph against the real MSAL and requests: sign-in, token cache
persistence, delta paging and changes, resync, throttling, and content downloads."""
from __future__ import annotations

import hashlib

import msal
import pytest
import requests

from orchestrator.sources.cloud_hashes import QuickXorHash
from tests.servers.fake_graph import FakeGraph

GRAPH_SCOPE = ["https://graph.microsoft.com/.default"]
USER_SCOPES = ["Files.Read"]


@pytest.fixture(scope="module")
def server():
    with FakeGraph() as fake:
        yield fake


@pytest.fixture
def fake(server, monkeypatch):
    server.reset()
    # requests lets REQUESTS_CA_BUNDLE (set on these machines) override a session's `verify`,
    # MSAL's included: point it at the test CA, as the session's conftest does.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.ca_bundle)
    return server


def msal_options(fake: FakeGraph, tenant: str, **options) -> dict:
    return dict(authority=fake.authority_url(tenant), validate_authority=False,
                instance_discovery=False, verify=fake.ca_bundle, **options)


def public_app(fake: FakeGraph, **options) -> msal.PublicClientApplication:
    return msal.PublicClientApplication(fake.client_id,
                                        **msal_options(fake, "consumers", **options))


def confidential_app(fake: FakeGraph, secret: str | None = None):
    return msal.ConfidentialClientApplication(
        fake.client_id, client_credential=secret or fake.client_secret,
        **msal_options(fake, "contoso.onmicrosoft.com"))


def sign_in(app: msal.PublicClientApplication, fake: FakeGraph) -> dict:
    """What a sign-in elsewhere leaves behind (a refresh token), redeemed through MSAL."""
    return app.acquire_token_by_refresh_token(fake.issue_refresh_token(), USER_SCOPES)


def user_token(fake: FakeGraph) -> str:
    return sign_in(public_app(fake), fake)["access_token"]


def app_token(fake: FakeGraph) -> str:
    return confidential_app(fake).acquire_token_for_client(GRAPH_SCOPE)["access_token"]


def graph(fake: FakeGraph, token: str | None) -> requests.Session:
    http = requests.Session()
    http.verify = fake.ca_bundle
    if token:
        http.headers["Authorization"] = f"Bearer {token}"
    return http


def walk(http: requests.Session, url: str) -> tuple[list[dict], str, int]:
    """Every item from `url` through its nextLinks, the final deltaLink, and the page count."""
    items, pages = [], 0
    while True:
        page = http.get(url)
        assert page.status_code == 200, page.text
        body, pages = page.json(), pages + 1
        items += body["value"]
        if "@odata.deltaLink" in body:
            return items, body["@odata.deltaLink"], pages
        url = body["@odata.nextLink"]


def by_name(items: list[dict]) -> dict[str, dict]:
    return {item["name"]: item for item in items if "name" in item}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest().upper()       # Graph's sha256Hash is upper-case hex


# ---- the authority, through MSAL

def test_client_credentials_give_an_app_token_that_reads_the_business_drive(fake):
    token = app_token(fake)

    answer = graph(fake, token).get(f"{fake.graph_url}/drives/{fake.business_drive_id}/root/delta")

    assert answer.status_code == 200
    assert fake.token_grants == ["client_credentials"]
    assert fake.requests["discovery"] == 1


def test_a_wrong_client_secret_is_refused_as_invalid_client(fake):
    result = confidential_app(fake, secret="not-the-secret").acquire_token_for_client(GRAPH_SCOPE)

    assert result["error"] == "invalid_client"
    assert "AADSTS7000215" in result["error_description"]
    assert fake.token_grants == []


def test_a_refresh_token_redeemed_through_msal_records_an_account_and_a_rotated_refresh_token(fake):
    cache = msal.SerializableTokenCache()
    app = public_app(fake, token_cache=cache)
    first = fake.issue_refresh_token()

    result = app.acquire_token_by_refresh_token(first, USER_SCOPES)

    assert "access_token" in result, result
    [account] = app.get_accounts()
    assert account["username"] == "sluice-test@outlook.com"
    [stored] = cache.search(msal.TokenCache.CredentialType.REFRESH_TOKEN)
    assert stored["secret"] != first
    assert fake.token_grants == ["refresh_token"]


def test_an_unknown_refresh_token_is_refused_as_invalid_grant(fake):
    result = public_app(fake).acquire_token_by_refresh_token("never-issued", USER_SCOPES)

    assert result["error"] == "invalid_grant"
    assert result["error_codes"] == [70000]


def test_a_restored_token_cache_answers_from_the_cache_until_a_refresh_is_forced(fake):
    signed_in = msal.SerializableTokenCache()
    sign_in(public_app(fake, token_cache=signed_in), fake)
    restored = msal.SerializableTokenCache()
    restored.deserialize(signed_in.serialize())
    app = public_app(fake, token_cache=restored)
    [account] = app.get_accounts()

    cached = app.acquire_token_silent(USER_SCOPES, account=account)
    fake.expire_access_tokens()
    # MSAL trusts the cached token's expires_in and cannot know the server revoked it: only
    # the client seeing Graph's 401 and forcing a refresh gets a new one.
    still_cached = app.acquire_token_silent(USER_SCOPES, account=account)
    refreshed = app.acquire_token_silent(USER_SCOPES, account=account, force_refresh=True)

    me = f"{fake.graph_url}/me/drive/root/delta"
    assert cached["token_source"] == still_cached["token_source"] == "cache"
    assert still_cached["access_token"] == cached["access_token"]
    assert graph(fake, cached["access_token"]).get(me).status_code == 401
    assert refreshed["token_source"] == "identity_provider"
    assert graph(fake, refreshed["access_token"]).get(me).status_code == 200
    assert fake.token_grants == ["refresh_token", "refresh_token"]
    assert restored.has_state_changed        # the rotated refresh token is there to persist


def test_msal_replays_a_throttled_token_answer_without_asking_again_until_retry_after(fake):
    fake.fail_next("token", 429, retry_after=60)
    app = confidential_app(fake)

    first = app.acquire_token_for_client(GRAPH_SCOPE)
    second = app.acquire_token_for_client(GRAPH_SCOPE)

    assert first["error"] == second["error"] == "temporarily_unavailable"
    assert fake.requests["token"] == 1


# ---- delta

def test_initial_enumeration_pages_through_next_links_to_a_delta_link(fake):
    for name in "abcde":
        fake.put(fake.personal_drive_id, f"site/{name}.txt", name.encode())
    http = graph(fake, user_token(fake))

    items, delta_link, pages = walk(http, f"{fake.graph_url}/me/drive/root/delta?$top=2")

    assert pages == 4
    assert delta_link.startswith(f"{fake.graph_url}/me/drive/root/delta?token=")
    assert "root" in items[0] and items[1]["name"] == "site"
    assert sorted(by_name(items)) == ["a.txt", "b.txt", "c.txt", "d.txt", "e.txt", "root", "site"]
    assert all("path" not in item["parentReference"] for item in items)
    assert walk(http, delta_link)[0] == []


def test_a_later_delta_reports_overwrites_deletions_and_moves_by_id_and_a_moved_folder_alone(fake):
    drive = fake.personal_drive_id
    fake.put(drive, "site/index.html", b"v1")
    fake.put(drive, "site/old.css", b"old")
    fake.put(drive, "assets/img/logo.png", b"png")
    http = graph(fake, user_token(fake))
    before, delta_link, _ = walk(http, f"{fake.graph_url}/me/drive/root/delta")
    ids = {item["name"]: item["id"] for item in before}

    fake.put(drive, "SITE/index.html", b"v2")            # names are case-insensitive
    fake.delete(drive, "site/old.css")
    fake.move(drive, "assets/img", "site/images")
    changes, _, _ = walk(http, delta_link)

    changed = {item["id"]: item for item in changes}
    assert changed[ids["index.html"]]["file"]["hashes"]["sha256Hash"] == sha256(b"v2")
    assert changed[ids["old.css"]]["deleted"] == {"state": "deleted"}
    assert "size" not in changed[ids["old.css"]] and "cTag" not in changed[ids["old.css"]]
    assert changed[ids["img"]]["name"] == "images"
    assert changed[ids["img"]]["parentReference"]["id"] == ids["site"]
    assert ids["logo.png"] not in changed
    assert {ids["root"], ids["site"], ids["assets"]} <= set(changed)     # folders above a change


def test_deleting_a_folder_reports_everything_below_it_as_deleted_children_first(fake):
    fake.put(fake.personal_drive_id, "site/css/a.css", b"a")
    http = graph(fake, user_token(fake))
    before, delta_link, _ = walk(http, f"{fake.graph_url}/me/drive/root/delta")
    names = {item["id"]: item["name"] for item in before}

    fake.delete(fake.personal_drive_id, "site")
    changes, _, _ = walk(http, delta_link)

    assert [names[item["id"]] for item in changes if "deleted" in item] == ["a.css", "css", "site"]
    assert "folder" in changes[-1] and changes[-1]["parentReference"]["id"] == before[0]["id"]


def test_delta_exclude_parent_leaves_out_the_folders_above_a_change(fake):
    fake.put(fake.personal_drive_id, "site/index.html", b"v1")
    http = graph(fake, user_token(fake))
    _, delta_link, _ = walk(http, f"{fake.graph_url}/me/drive/root/delta")
    fake.put(fake.personal_drive_id, "site/index.html", b"v2")

    plain = http.get(delta_link).json()["value"]
    excluding = http.get(delta_link, headers={"deltaExcludeParent": "true"}).json()["value"]

    assert [item["name"] for item in plain] == ["root", "site", "index.html"]
    assert [item["name"] for item in excluding] == ["index.html"]


def test_a_folder_scoped_delta_covers_the_folder_below_and_reports_items_moved_out_as_deleted(fake):
    drive = fake.personal_drive_id
    fake.put(drive, "apps/site/index.html", b"<h1>")
    fake.put(drive, "apps/site/css/a.css", b"a")
    fake.put(drive, "apps/other.txt", b"other")
    http = graph(fake, user_token(fake))

    items, delta_link, _ = walk(http, f"{fake.graph_url}/me/drive/root:/apps/site:/delta")
    fake.move(drive, "apps/site/css", "apps/css")
    fake.move(drive, "apps/other.txt", "apps/site/other.txt")
    changes, _, _ = walk(http, delta_link)

    assert sorted(by_name(items)) == ["a.css", "css", "index.html", "site"]
    ids = {item["name"]: item["id"] for item in items}
    gone = {item["id"] for item in changes if "deleted" in item}
    assert gone == {ids["css"], ids["a.css"]}
    assert "other.txt" in by_name(changes)


def test_token_latest_gives_an_empty_page_whose_delta_link_sees_only_later_changes(fake):
    fake.put(fake.business_drive_id, "old.txt", b"old")
    fake.put(fake.business_drive_id, "kept.txt", b"kept")
    http = graph(fake, app_token(fake))
    delta_url = f"{fake.graph_url}/drives/{fake.business_drive_id}/root/delta"

    latest = http.get(delta_url, params={"token": "latest"}).json()
    fake.put(fake.business_drive_id, "new.txt", b"new")
    fake.delete(fake.business_drive_id, "old.txt")
    changes, _, _ = walk(http, latest["@odata.deltaLink"])

    assert latest["value"] == []
    assert sorted(by_name(changes)) == ["new.txt", "root"]
    [deleted] = [item for item in changes if "deleted" in item]
    assert "name" not in deleted                      # business deletions come without a name


def test_a_business_drive_refuses_a_folder_scoped_delta_as_graph_does(fake):
    fake.put(fake.business_drive_id, "site/index.html", b"x")
    http = graph(fake, app_token(fake))

    answer = http.get(f"{fake.graph_url}/drives/{fake.business_drive_id}/root:/site:/delta")

    assert answer.status_code == 501
    assert answer.json()["error"]["code"] == "notSupported"


def test_require_resync_answers_gone_with_a_location_that_enumerates_again(fake):
    fake.put(fake.personal_drive_id, "site/index.html", b"x")
    http = graph(fake, user_token(fake))
    _, delta_link, _ = walk(http, f"{fake.graph_url}/me/drive/root/delta")

    fake.require_resync()
    gone = http.get(delta_link)
    items, fresh_link, _ = walk(http, gone.headers["Location"])

    assert gone.status_code == 410
    assert gone.json()["error"]["code"] == "resyncChangesApplyDifferences"
    assert sorted(by_name(items)) == ["index.html", "root", "site"]
    assert http.get(fresh_link).status_code == 200


# ---- content

def test_content_redirects_to_a_download_url_that_refuses_an_authorization_header(fake):
    fake.put(fake.personal_drive_id, "site/index.html", b"<h1>hello</h1>")
    http = graph(fake, user_token(fake))
    item = by_name(walk(http, f"{fake.graph_url}/me/drive/root/delta")[0])["index.html"]
    content_url = f"{fake.graph_url}/me/drive/items/{item['id']}/content"

    redirect = http.get(content_url, allow_redirects=False)
    anonymous = graph(fake, None).get(redirect.headers["Location"])
    # requests keeps the header on a same-host redirect: a client has to drop it itself
    forwarded = http.get(content_url)

    assert redirect.status_code == 302 and redirect.content == b""
    assert redirect.headers["Location"] == item["@microsoft.graph.downloadUrl"]
    assert anonymous.content == b"<h1>hello</h1>"
    assert forwarded.status_code == 401
    assert fake.downloads == ["site/index.html"]
    assert fake.requests["content"] == 2 and fake.requests["download"] == 2


def test_injected_throttling_answers_with_retry_after_and_a_graph_error_then_recovers(fake):
    fake.put(fake.personal_drive_id, "a.txt", b"a")
    http = graph(fake, user_token(fake))
    fake.fail_next("delta", 429, retry_after=2)
    fake.fail_next("download", 503, retry_after=0.25, times=2)
    delta_url = f"{fake.graph_url}/me/drive/root/delta"

    throttled = http.get(delta_url)
    items, _, _ = walk(http, delta_url)
    download = by_name(items)["a.txt"]["@microsoft.graph.downloadUrl"]
    unavailable = [graph(fake, None).get(download) for _ in range(3)]

    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "2"
    assert throttled.json()["error"]["code"] == "activityLimitReached"
    assert [answer.status_code for answer in unavailable] == [503, 503, 200]
    assert unavailable[0].headers["Retry-After"] == "0.25"


def test_file_hashes_follow_the_published_algorithms_and_each_drives_hash_set(fake):
    data = bytes(range(256)) * 41
    fake.put(fake.personal_drive_id, "f.bin", data)
    fake.put(fake.business_drive_id, "f.bin", data)
    expected = QuickXorHash()
    expected.update(data)

    personal = by_name(walk(graph(fake, user_token(fake)),
                            f"{fake.graph_url}/me/drive/root/delta")[0])
    business = by_name(walk(graph(fake, app_token(fake)),
                            f"{fake.graph_url}/drives/{fake.business_drive_id}/root/delta")[0])

    assert personal["f.bin"]["file"]["hashes"] == {"quickXorHash": expected.b64digest(),
                                                   "sha256Hash": sha256(data)}
    assert business["f.bin"]["file"]["hashes"] == {"quickXorHash": expected.b64digest()}
    assert "cTag" in personal["f.bin"] and "cTag" not in business["f.bin"]
    assert business["f.bin"]["parentReference"]["driveType"] == "business"


def test_graph_refuses_missing_and_expired_tokens_and_app_tokens_on_me(fake):
    user, app = user_token(fake), app_token(fake)
    me = f"{fake.graph_url}/me/drive/root/delta"
    business = f"{fake.graph_url}/drives/{fake.business_drive_id}/root/delta"

    missing = graph(fake, None).get(me)
    on_me = graph(fake, app).get(me)
    on_business = graph(fake, user).get(business)
    fake.expire_access_tokens()
    expired = graph(fake, user).get(me)

    assert missing.status_code == expired.status_code == 401
    assert expired.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert "WWW-Authenticate" in expired.headers
    assert on_me.status_code == 400
    assert on_business.status_code == 403
