"""The dashboard at `/`, in headless Chromium (Debian's `chromium`, driven by Playwright)
against the API served by uvicorn in a thread, real Redis, the real worker and a real git
repository. The browser test saves a screenshot to var/screenshots/dashboard.png."""
from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from orchestrator.core import events as ev
from orchestrator.core import keys
from orchestrator.core.decisions import execute
from orchestrator.core.lease import Lease
from orchestrator.deploying.drift import check_app
from orchestrator.deploying.operator_actions import pause
from tests.helpers import FUNCTION_APP, wait_for
from tests.integration.flow import sync_and_wait
from tests.integration.notifier_thread import notified_app, notifier_running
from tests.integration.test_host_views import D1, D2, D3, SILENT, hosted_app, switched
from tests.servers.api_server import serving
from tests.servers.receiver import Answer, receiver

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = ROOT / "var" / "screenshots" / "dashboard.png"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "dashboard-test-token"
V2 = {"HttpHello/__init__.py": "def main(req):\n    return 'v2'\n"}
WAIT_MS = 30_000


@pytest.fixture
def deployed(workspace, request):
    """App `hello` deploys a git repository and has its first deployment live; the API has
    a token (and the api settings a test parametrizes this with). Yields (services, repo,
    first deployment, base URL of the served API)."""
    repo = workspace.repo()
    repo.commit(FUNCTION_APP)
    services = workspace.configure(
        {"hello": {"layout": "functions", "target": str(workspace.target("hello")),
                   "source": {"type": "git", "url": str(repo.path), "poll_interval": "1h"}}},
        api={"token": TOKEN, **getattr(request, "param", {})})
    first = sync_and_wait(services, "hello")
    assert first.status == "success"
    with serving(services) as base:
        yield services, repo, first, base


@pytest.fixture
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (make test does, as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, deployed):
    _skip_without(deployed[3], deployed[2].id)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    yield page
    context.close()          # closes the page's event stream before the server stops


def test_the_page_lists_each_app_with_its_live_deployment_without_javascript(deployed):
    _, repo, first, base = deployed

    html = httpx.get(base + "/").text

    row = _between(html, 'id="app-hello"', "</tr>")
    assert f">{first.id}</a>" in row and repo.head()[:12] in row and ">on<" in row
    assert ">success</span>" in row and 'data-action="sync"' in row
    history = _between(html, 'id="history-hello"', "</section>")
    assert f'data-deployment="{first.id}"' in history and "DeploymentSucceeded" in html


def test_a_target_in_drift_shows_in_its_apps_row_as_sluice_apps_shows_it_until_repaired(deployed, workspace):
    services, _, _, base = deployed
    target = workspace.target("hello")
    target.unlink()
    target.mkdir()
    check_app(services, "hello")

    row = _between(httpx.get(base + "/").text, 'id="app-hello"', "</tr>")

    assert "DRIFT (not repaired): " in row and str(target) in row and "real directory" in row
    target.rmdir()
    check_app(services, "hello")
    assert "DRIFT" not in _between(httpx.get(base + "/").text, 'id="app-hello"', "</tr>")


def reject(services, revision: str, reason: str) -> None:
    """What a worker records when a revision rolled back by itself."""
    execute(services.projections, "hello", lambda view: [ev.RevisionRejected(
        app="hello", at=time.time(), revision=revision, deployment_id="d-rolled-back", reason=reason)])


def test_a_switched_deployment_shows_as_verifying_and_a_rejected_revision_in_the_apps_row(deployed):
    services, repo, _, base = deployed
    revision, at = repo.commit(V2, "Say version 2"), time.time()
    reject(services, "f" * 40, "health: GET http://127.0.0.1:9/ answered 500")
    # what a worker records while it probes the switched release (it holds the app's lease)
    with Lease(services.redis, "hello", "w", ttl=30):
        execute(services.projections, "hello", lambda view: [
            ev.DeploymentQueued(app="hello", at=at, deployment_id="d-2", revision=revision, trigger="manual"),
            ev.DeploymentStarted(app="hello", at=at, deployment_id="d-2", worker="w"),
            ev.DeploymentSwitched(app="hello", at=at, deployment_id="d-2", release="/r/d-2", previous=None),
            ev.HealthCheckStarted(app="hello", at=at, deployment_id="d-2", url="http://127.0.0.1:9/")])

        html = httpx.get(base + "/").text
        css = httpx.get(base + "/static/dashboard.css").text

    row = _between(html, 'id="app-hello"', "</tr>")
    assert '<span class="status status-verifying">verifying</span>' in row
    assert '<strong class="rejected">rejected ffffffffffff: health: GET http://127.0.0.1:9/ answered 500' in row
    history = _between(html, 'id="history-hello"', "</section>")
    assert '<tr data-deployment="d-2" class="status-verifying">' in history
    assert ".status.status-activating, .status.status-verifying {" in css


def test_the_page_escapes_what_it_shows(deployed):
    services, _, _, base = deployed
    pause(services, "hello", reason="<script>alert(1)</script> & more")

    html = httpx.get(base + "/").text

    assert "paused: &lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html
    assert "<script>alert" not in html


def test_the_page_and_its_static_files_are_served_without_any_other_host(deployed):
    base = deployed[3]
    html = httpx.get(base + "/").text
    for asset, kind in (("/static/dashboard.js", "javascript"), ("/static/dashboard.css", "css")):
        response = httpx.get(base + asset)
        assert response.status_code == 200 and kind in response.headers["content-type"]
    assert httpx.get(base + "/static/../__init__.py").status_code == 404
    assert not re.search(r'(src|href)="(https?:)?//', html)


def test_the_page_may_not_be_framed_and_runs_only_its_own_script(deployed):
    headers = httpx.get(deployed[3] + "/").headers

    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    policy = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


def test_sync_with_the_token_shows_the_new_deployment_arrive_live_and_its_log(page, deployed):
    services, repo, first, base = deployed
    page.goto(base + "/")
    live = page.locator("#app-hello td.live")
    _expect(live).to_have_text(first.id)
    _expect(page.locator("#feed-state")).to_have_text("(following)")

    page.fill("#token", TOKEN)
    page.click("#save-token")
    revision = repo.commit(V2, "Say version 2")
    page.click("#app-hello button[data-action=sync]")

    _expect(page.locator("#notice")).to_contain_text("sync hello: deployment ")
    new_id = re.search(r"deployment (\S+)", page.locator("#notice").inner_text()).group(1)
    assert new_id != first.id
    _expect(page.locator(f'#feed li[data-type="DeploymentSucceeded"]:has-text("{new_id}")')).to_have_count(1)
    _expect(live).to_have_text(new_id)
    _expect(page.locator("#app-hello td.revision")).to_have_text(revision[:12])
    _expect(page.locator(f'#history-hello tr[data-deployment="{new_id}"] .badge')).to_have_text("live")

    page.click(f'#history-hello a.log-link[data-deployment="{new_id}"]')
    _expect(page.locator("#log")).to_be_visible()
    _expect(page.locator("#log-deployment")).to_have_text(new_id)
    _expect(page.locator("#log-lines")).to_contain_text("[switch]")

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    print(f"dashboard screenshot: {SCREENSHOT}")
    assert services.projections.app("hello").active.id == new_id


def test_a_drift_and_its_repair_show_live_in_the_apps_row(page, deployed, workspace):
    services, _, _, base = deployed
    target = workspace.target("hello")
    page.goto(base + "/")
    _expect(page.locator("#feed-state")).to_have_text("(following)")
    drift = page.locator("#app-hello .drift")
    _expect(drift).to_have_count(0)

    target.unlink()
    target.mkdir()
    check_app(services, "hello")

    _expect(drift).to_have_text(re.compile(r"^DRIFT \(not repaired\): .*real directory"))
    _expect(drift).to_contain_text(str(target))
    target.rmdir()
    check_app(services, "hello")
    _expect(page.locator('#feed li[data-type="DriftRepaired"]')).to_have_count(1)
    _expect(drift).to_have_count(0)


def test_sync_of_a_rejected_head_says_why_and_deploys_it_once_the_operator_confirms(page, deployed):
    services, repo, first, base = deployed
    revision = repo.commit(V2, "Say version 2")
    reject(services, revision, "health: GET http://127.0.0.1:9/ answered 500")
    page.goto(base + "/")
    _expect(page.locator("#app-hello .rejected")).to_have_text(
        f"rejected {revision[:12]}: health: GET http://127.0.0.1:9/ answered 500")
    page.fill("#token", TOKEN)
    page.click("#save-token")
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))

    page.click("#app-hello button[data-action=sync]")

    _expect(page.locator("#notice.ok")).to_contain_text("sync hello: deployment ")
    _expect(page.locator("#app-hello td.revision")).to_have_text(revision[:12])
    _expect(page.locator("#app-hello .rejected")).to_have_count(0)
    assert asked == [f"revision {revision[:12]} was rejected: health: GET http://127.0.0.1:9/ answered "
                     f"500; `sluice sync hello --force` deploys it anyway\n\nDeploy {revision[:12]} "
                     "to hello anyway?"]


def test_an_action_refused_by_the_api_shows_its_error_message(page, deployed):
    _, _, first, base = deployed
    page.goto(base + "/")
    page.fill("#token", "not-the-token")
    page.click("#save-token")

    page.click("#app-hello button[data-action=sync]")

    notice = page.locator("#notice.error")
    _expect(notice).to_contain_text("sync hello refused: 401: ")
    assert re.search(r"401: \S", notice.inner_text())
    _expect(page.locator("#app-hello td.live")).to_have_text(first.id)


def test_rollback_after_confirming_switches_back_and_pauses_the_app(page, deployed):
    services, repo, first, base = deployed
    repo.commit(V2, "Say version 2")
    second = sync_and_wait(services, "hello")
    page.goto(base + "/")
    _expect(page.locator("#app-hello td.live")).to_have_text(second.id)
    page.fill("#token", TOKEN)
    page.click("#save-token")
    page.once("dialog", lambda dialog: dialog.accept())

    page.click("#app-hello button[data-action=rollback]")

    _expect(page.locator("#notice.ok")).to_contain_text("rollback hello: deployment ")
    _expect(page.locator("#app-hello td.revision")).to_have_text(first.revision[:12])
    _expect(page.locator("#app-hello td.trigger")).to_have_text("rollback")
    _expect(page.locator("#app-hello td.automatic")).to_have_text(f"paused: rolled back to {first.id}")
    assert services.projections.app("hello").active.trigger == "rollback"


def test_redeploy_asks_first_and_does_nothing_when_the_operator_declines(page, deployed):
    services, repo, first, base = deployed
    repo.commit(V2, "Say version 2")
    second = sync_and_wait(services, "hello")
    page.goto(base + "/")
    page.fill("#token", TOKEN)
    page.click("#save-token")
    asked: list[str] = []
    posted: list[str] = []
    page.on("request", lambda request: request.method == "POST" and posted.append(request.url))
    older = f'#history-hello tr[data-deployment="{first.id}"] button[data-action=redeploy]'

    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.click(older)
    # a declined click returns before any request, so one sent would precede the next click's
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.click(older)

    _expect(page.locator("#notice.ok")).to_contain_text("redeploy hello: deployment ")
    assert asked == [f"Redeploy deployment {first.id}'s files to hello? They replace what is live now."] * 2
    assert posted == [f"{base}/api/apps/hello/redeploy"]
    history = services.projections.app("hello").history()
    assert [d.trigger for d in history] == ["redeploy", "manual", "manual"] and history[1].id == second.id


@pytest.mark.parametrize("deployed", [{"reads": "token"}], indirect=True)
def test_a_page_whose_reads_need_the_token_shows_the_apps_once_it_is_given(page, deployed):
    _, repo, first, base = deployed
    assert httpx.get(base + "/api/apps").status_code == 401
    html = httpx.get(base + "/").text
    assert first.id not in html and 'id="locked"' in html

    page.goto(base + "/")
    _expect(page.locator("#locked")).to_be_visible()
    page.fill("#token", TOKEN)
    page.click("#save-token")

    _expect(page.locator("#app-hello td.live")).to_have_text(first.id)
    _expect(page.locator("#app-hello td.revision")).to_have_text(repo.head()[:12])
    _expect(page.locator(f'#history-hello tr[data-deployment="{first.id}"] .badge')).to_have_text("live")
    _expect(page.locator("#locked")).to_have_count(0)
    _expect(page.locator("#feed-state")).to_contain_text("refreshing every 5 s")


def _expect(locator):
    """Playwright's expect, waiting as long as the page's own timeout: the page refreshes its
    queue panel every 5 s (a failing try is no feed event), which expect's default 5 s misses
    on a loaded machine."""
    from playwright.sync_api import expect
    expect.set_options(timeout=WAIT_MS)
    return expect(locator)


def _skip_without(base: str, deployment_id: str) -> None:
    """Skip (naming them) if API endpoints the page's script calls do not exist yet: a route
    that is missing answers 404 {"detail": "Not Found"} (or 405), a real one anything else
    (an unknown id is 404 {"error": ...}); nothing here changes anything (no token)."""
    missing = []
    with httpx.Client(base_url=base, timeout=10) as client:
        for method, path in [("GET", "/api/apps"), ("GET", "/api/apps/hello"), ("GET", "/api/queue"),
                             ("GET", f"/api/deployments/{deployment_id}/log"),
                             ("POST", "/api/apps/hello/sync"), ("GET", "/api/events")]:
            with client.stream(method, path) as response:
                if response.status_code == 405 or response.status_code == 404 and \
                        response.read() == b'{"detail":"Not Found"}':
                    missing.append(f"{method} {path}")
    if missing:
        pytest.skip("the JSON API the dashboard's script uses is missing: " + ", ".join(missing))


def _between(text: str, start: str, end: str) -> str:
    at = text.index(start)
    return text[at:text.index(end, at)]


def test_an_open_log_shows_a_builds_lines_as_they_come(page, deployed, tmp_path):
    services, repo, _, base = deployed
    release = tmp_path / "go-on"
    script = ('#!/bin/sh\ncp -r "$DEPLOYMENT_SOURCE"/. "$DEPLOYMENT_TARGET"/\necho "first build line"\n'
              f'while [ ! -e {release} ]; do sleep 0.1; done\necho "second build line"\n')
    repo.commit({".deployment": "[config]\ncommand = deploy.sh\n", "deploy.sh": script})
    (repo.path / "deploy.sh").chmod(0o755)
    repo.commit({}, "executable")
    page.goto(base + "/")
    page.fill("#token", TOKEN)
    page.click("#save-token")
    page.click("#app-hello button[data-action=sync]")
    _expect(page.locator("#notice")).to_contain_text("sync hello: deployment ")
    new_id = re.search(r"deployment (\S+)", page.locator("#notice").inner_text()).group(1)

    page.click(f'#history-hello a.log-link[data-deployment="{new_id}"]')
    _expect(page.locator("#log-lines")).to_contain_text("first build line")
    assert "second build line" not in page.locator("#log-lines").inner_text()
    release.touch()

    _expect(page.locator("#log-lines")).to_contain_text("second build line")
    _expect(page.locator("#log-lines")).to_contain_text("[switch]")
    assert not page.locator('#feed li[data-type="BuildOutput"]').count()


@pytest.fixture
def notifying(workspace):
    """App `hello` tells a webhook answering 503 of its deployments, a notifier running, the
    API served with a token. Yields (services, base URL of the served API)."""
    with receiver() as hook:
        hook.answers = [Answer(503, "<b>down</b> for maintenance")]
        _, services = notified_app(workspace, hook.url, api={"token": TOKEN})
        with notifier_running(services), serving(services) as base:
            yield services, base


def test_the_queue_panel_shows_the_notifications_pending_and_each_delivery_failing(notifying):
    services, base = notifying
    sync_and_wait(services, "hello")
    wait_for(lambda: services.redis.hlen(keys.NOTIFY_FAILING), what="a delivery failing")

    panel = _between(httpx.get(base + "/").text, 'id="queue"', "</section>")

    assert "<dt>notifications pending</dt><dd>1</dd>" in panel
    assert "<dt>notifications failing</dt><dd>1</dd>" in panel
    failing = _between(panel, 'id="notify-failing"', "</ul>")
    assert '<b class="app">hello</b> webhook: DeploymentSucceeded, try 1 failed: ' in failing
    assert "HTTP 503: &lt;b&gt;down&lt;/b&gt; for maintenance" in failing and "next try in " in failing


def test_the_queue_panel_shows_a_delivery_failing_after_the_page_loaded(browser, notifying):
    services, base = notifying
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(base + "/")
    _expect(page.locator("#queue-depths")).to_contain_text("notifications failing0")

    sync_and_wait(services, "hello")

    _expect(page.locator("#notify-failing li")).to_contain_text(
        "hello webhook: DeploymentSucceeded, try 1 failed: HTTP 503: <b>down</b> for maintenance; next try in ")
    _expect(page.locator("#queue-depths")).to_contain_text("notifications failing1")
    _expect(page.locator("#queue-depths")).to_contain_text("notifications pending1")
    page.context.close()


def test_an_apps_hosts_show_what_each_runs_those_lagging_marked_and_each_deployments_host_states(
        tmp_path, redis_url):
    hosted = hosted_app(tmp_path, redis_url)
    with serving(hosted.services) as base:
        html = httpx.get(base + "/").text

    row = _between(html, 'id="app-hello"', "</tr>")
    assert f'<li class="host host-rolling-out" data-host="web1">web1: {D3} (rolling out)</li>' in row
    assert f'<li class="host host-in-step" data-host="web2">web2: {D1}</li>' in row
    assert '<li class="host host-behind" data-host="web3">web3: nothing (behind)</li>' in row
    history = _between(html, 'id="history-hello"', "</section>")
    d2 = _between(history, f'<tr data-deployment="{D2}"', "</tr>")
    assert f'<li data-host="web1">web1: rolled back</li><li data-host="web2">web2: failed: {SILENT}</li>' in d2
    assert "hosts" not in _between(html, 'id="app-plain"', "</tr>"), "an app without hosts lists none"


def test_a_host_catching_up_shows_in_step_live(browser, tmp_path, redis_url):
    hosted = hosted_app(tmp_path, redis_url)
    with serving(hosted.services) as base:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        try:
            page.goto(base + "/")
            _expect(page.locator("#feed-state")).to_have_text("(following)")
            web3 = page.locator('#app-hello li[data-host="web3"]')
            _expect(web3).to_have_text("web3: nothing (behind)")

            hosted.append(switched(D1, "web3", 11, converged=True))

            _expect(web3).to_have_text(f"web3: {D1}")
            _expect(web3).to_have_class("host host-in-step")
            _expect(page.locator('#app-hello li[data-host="web1"]')).to_have_class("host host-rolling-out")
            _expect(page.locator(f'#history-hello tr[data-deployment="{D1}"] li[data-host="web3"]')
                    ).to_have_text("web3: switched")
            _expect(page.locator(f'#history-hello tr[data-deployment="{D2}"] li[data-host="web2"]')
                    ).to_have_text(f"web2: failed: {SILENT}")
        finally:
            context.close()
