"""The notifier against receivers on loopback (tests/servers/receiver.py): the exact requests
each channel makes of a real deployment's events, tries and give-ups as the receiver answers,
and the order an app's events arrive in. The notifier runs in a thread of the test, on the
session's Redis and Celery worker; its waits between tries are recorded, not slept."""
from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterator
from contextlib import contextmanager

from orchestrator.core import events as ev
from orchestrator.core import keys, replies
from orchestrator.notifying.notifier import Notifier
from orchestrator.runtime.services import Services
from tests.helpers import FUNCTION_APP, git_app, wait_for
from tests.integration.flow import sync_and_wait, wait_until_let_go
from tests.integration.notifier_thread import notifier_running
from tests.servers.receiver import Answer, Receiver, receiver

PUBLIC = "https://sluice.example.com"
STEPS = ["DeploymentQueued", "DeploymentStarted", "DeploymentSucceeded"]
QUICK = {"backoff": "0.5s", "max_backoff": "4s", "attempts": 4, "concurrency": 4}


@contextmanager
def notifying(services: Services, consumer: str = "test") -> Iterator[list[float]]:
    """A notifier running until the block ends; yields the waits it asked for between tries."""
    waits: list[float] = []
    with notifier_running(services, consumer, wait=lambda seconds: waits.append(seconds) or False):
        yield waits


def configure(workspace, channels: list[dict], name: str = "hello", **settings) -> tuple:
    repo = workspace.repo(name)
    repo.commit(FUNCTION_APP, message="first version")
    app = {**git_app(repo, workspace.target(name)), "notify": channels}
    services = workspace.configure({name: app}, public_url=PUBLIC,
                                   notifier={**QUICK, **settings.pop("notifier", {})}, **settings)
    return repo, services


def feed_ids(services: Services, app: str, types: list[str]) -> list[str]:
    return [replies.text(i) for i, f in replies.entries(services.redis.xrange(keys.FEED))
            if f[b"app"].decode() == app and f[b"type"].decode() in types]


def ends(services: Services, app: str) -> list[ev.Event]:
    return [r.event for r in services.store.read(app)
            if isinstance(r.event, (ev.NotificationDelivered, ev.NotificationFailed))]


def ended(services: Services, app: str, count: int) -> list[ev.Event]:
    return wait_for(lambda: len(ends(services, app)) >= count and ends(services, app),
                    what=f"{count} notifications of {app} to end")


def test_a_webhook_gets_each_event_it_wants_once_in_order_saying_which_delivery_and_event(workspace):
    with receiver() as hook:
        repo, services = configure(workspace, [{"type": "webhook", "url": f"{hook.url}/hooks/sluice",
                                                "events": STEPS}])
        with notifying(services):
            d = sync_and_wait(services, "hello")
            got = hook.wait_until(3)
            ended(services, "hello", 3)

    assert [r.event for r in got] == STEPS
    assert [r.delivery for r in got] == [f"{i}:0" for i in feed_ids(services, "hello", STEPS)]
    for request in got:
        assert (request.method, request.path) == ("POST", "/hooks/sluice")
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"] == "Sluice-Notifier"
        assert "x-sluice-signature-256" not in request.headers       # no secret, no signature
        body = request.json()
        assert (body["app"], body["event"], body["delivery"]) == ("hello", request.event, request.delivery)
        assert body["deployment"]["id"] == d.id and body["deployment"]["revision"] == repo.head()
        assert body["deployment"]["trigger"] == "manual"
        assert body["log_url"] == f"{PUBLIC}/api/deployments/{d.id}/log?app=hello"
    last = got[-1].json()
    assert last["deployment"]["status"] == "success" and last["deployment"]["commit_message"] == "first version"
    assert last["text"] == f"hello: deployment {d.id} of {repo.head()[:12]} succeeded"
    delivered = ends(services, "hello")
    assert [(e.event, e.channel, e.attempts, e.status) for e in delivered] == \
        [(s, "webhook", 1, 200) for s in STEPS]
    assert [e.delivery for e in delivered] == [r.delivery for r in got]


def test_each_event_describes_the_deployment_as_it_was_then_though_told_after_it_ended(workspace):
    with receiver() as hook:
        _, services = configure(workspace, [{"type": "webhook", "url": hook.url, "events": STEPS}])
        hook.gate.clear()           # the first request held until the deployment is over
        with notifying(services):
            d = sync_and_wait(services, "hello")
            hook.gate.set()
            got = hook.wait_until(3)

    statuses = [r.json()["deployment"]["status"] for r in got]
    assert statuses == ["pending", "building", "success"], d.id
    assert got[1].json()["deployment"]["ended_at"] is None


def test_a_signed_webhook_carries_the_hmac_of_its_body_with_the_secret_and_no_secret_else(workspace):
    secret = os.environ["TEST_TOKEN"]
    with receiver() as hook:
        _, services = configure(workspace, [{"type": "webhook", "url": hook.url,
                                             "secret": "${TEST_TOKEN}",
                                             "headers": {"X-Team": "web"}}])
        with notifying(services):
            sync_and_wait(services, "hello")
            (request,) = hook.wait_until(1)
            ended(services, "hello", 1)

    expected = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-sluice-signature-256"] == f"sha256={expected}"
    assert request.headers["x-team"] == "web"
    assert request.event == "DeploymentSucceeded"       # the default: how deployments end
    assert secret.encode() not in request.body
    assert not any(secret in str(r.event) for r in services.store.read("hello"))


def test_a_kudu_hook_gets_the_ended_deployment_as_kudus_deploy_result(workspace):
    with receiver() as hook:
        repo, services = configure(workspace, [{"type": "kudu", "url": hook.url}])
        with notifying(services):
            d = sync_and_wait(services, "hello")
            (request,) = hook.wait_until(1)
            ended(services, "hello", 1)

    body = request.json()
    url = f"{PUBLIC}/scm/hello/api/deployments/{d.id}"
    assert request.event == "DeploymentSucceeded" and request.delivery
    assert {k: body[k] for k in ("id", "status", "complete", "active", "url", "log_url", "site_name",
                                 "message", "author", "provisioningState")} == {
        "id": d.id, "status": 4, "complete": True, "active": True, "url": url, "log_url": f"{url}/log",
        "site_name": "hello", "message": "first version", "author": "Test",
        "provisioningState": "Succeeded"}
    assert body["end_time"].endswith("Z") and body["received_time"].endswith("Z")


def test_a_slack_hook_gets_one_line_of_text_linking_to_the_log(workspace):
    with receiver() as hook:
        repo, services = configure(workspace, [{"type": "slack", "url": hook.url}])
        with notifying(services):
            d = sync_and_wait(services, "hello")
            (request,) = hook.wait_until(1)
            ended(services, "hello", 1)

    log = f"{PUBLIC}/api/deployments/{d.id}/log?app=hello"
    assert request.json() == {"text": f"hello: deployment {d.id} of {repo.head()[:12]} succeeded <{log}|log>"}


def test_a_receiver_answering_503_twice_then_200_has_the_event_once_after_three_tries(workspace):
    with receiver() as hook:
        hook.answers = [Answer(503, "busy"), Answer(503, "busy"), Answer(200)]
        _, services = configure(workspace, [{"type": "webhook", "url": hook.url}])
        with notifying(services) as waits:
            sync_and_wait(services, "hello")
            got = hook.wait_until(3)
            (end,) = ended(services, "hello", 1)

    assert len({r.delivery for r in got}) == 1 and len(got) == 3       # the same delivery, tried again
    assert isinstance(end, ev.NotificationDelivered)
    assert (end.attempts, end.status, end.delivery) == (3, 200, got[0].delivery)
    assert waits == [0.5, 1.0]                                          # backoff, doubling
    assert not services.redis.hlen(keys.NOTIFY_FAILING)


def test_a_429_is_tried_again_after_the_receivers_retry_after(workspace):
    with receiver() as hook:
        hook.answers = [Answer(429, "slow down", (("Retry-After", "7"),)), Answer(200)]
        _, services = configure(workspace, [{"type": "slack", "url": hook.url}])
        with notifying(services) as waits:
            sync_and_wait(services, "hello")
            (end,) = ended(services, "hello", 1)

    assert waits == [7.0]
    assert isinstance(end, ev.NotificationDelivered) and end.attempts == 2


def test_a_receiver_answering_401_fails_the_delivery_at_once_with_its_answer(workspace):
    with receiver() as hook:
        hook.answers = [Answer(401, "bad credentials")]
        _, services = configure(workspace, [{"type": "webhook", "url": hook.url}])
        with notifying(services) as waits:
            sync_and_wait(services, "hello")
            (end,) = ended(services, "hello", 1)

    assert len(hook.received) == 1 and waits == []
    assert isinstance(end, ev.NotificationFailed)
    assert (end.attempts, end.channel, end.event) == (1, "webhook", "DeploymentSucceeded")
    assert end.reason == "HTTP 401: bad credentials"


def test_a_receiver_failing_every_try_gets_a_notification_failed_after_the_last(workspace):
    with receiver() as hook:
        hook.answers = [Answer(502, "bad gateway")]
        _, services = configure(workspace, [{"type": "webhook", "url": hook.url}],
                                notifier={"attempts": 3})
        with notifying(services) as waits:
            sync_and_wait(services, "hello")
            (end,) = ended(services, "hello", 1)

    assert len(hook.received) == 3 and waits == [0.5, 1.0]
    assert isinstance(end, ev.NotificationFailed) and end.attempts == 3
    assert end.reason == "HTTP 502: bad gateway"
    assert not services.redis.hlen(keys.NOTIFY_FAILING)


def test_an_apps_deployments_are_told_in_order_and_a_held_receiver_holds_up_only_its_app(workspace):
    with receiver() as hook, receiver() as stuck:
        repo = workspace.repo("repo")
        repo.commit(FUNCTION_APP)
        apps = {"hello": {**git_app(repo, workspace.target("hello")),
                          "notify": [{"type": "webhook", "url": hook.url, "events": STEPS}]},
                "other": {**git_app(repo, workspace.target("other")),
                          "notify": [{"type": "webhook", "url": stuck.url, "events": STEPS}]}}
        services = workspace.configure(apps, notifier=QUICK)
        hook.delay = 0.05       # slow enough for the next events to queue up behind each request
        stuck.gate.clear()
        with notifying(services):
            sync_and_wait(services, "other")
            for n in range(3):
                repo.commit({"host.json": f'{{"version": "2.0", "n": {n}}}'})
                sync_and_wait(services, "hello")
            wait_until_let_go(services, "hello")
            got = hook.wait_until(9)
            assert len(stuck.received) == 1         # its first event, held all along
            stuck.gate.set()
            stuck.wait_until(3)

    assert [r.delivery for r in got] == [f"{i}:0" for i in feed_ids(services, "hello", STEPS)]
    assert [r.event for r in got] == STEPS * 3
    assert [r.event for r in stuck.received] == STEPS


def queued(app: str, n: int) -> ev.DeploymentQueued:
    return ev.DeploymentQueued(app=app, at=1_800_000_000.0 + n, deployment_id=f"d{n}",
                               revision=f"{n:040x}", trigger="manual")


def told_once_each(services: Services, hook: Receiver, count: int) -> list[str]:
    """The deliveries of `count` events, once each: a last event is told after them (an
    app's events go in order), so a repeat queued up before it would have come by then."""
    services.store.append("hello", [queued("hello", 99)], -1)
    got = hook.wait_until(count + 1)
    wait_for(lambda: len(ends(services, "hello")) == count + 1, what="the last delivery's end")
    return [r.delivery for r in got]


def test_a_notifier_started_again_takes_back_what_it_held_and_tells_each_once_in_order(workspace):
    with receiver() as hook:
        _, services = configure(workspace, [{"type": "webhook", "url": hook.url,
                                             "events": ["DeploymentQueued"]}],
                                notifier={"claim_after": "1h"})     # only its own entries: no claims
        died = Notifier(services, "n1")
        died.outbox.ensure_group()
        services.store.append("hello", [queued("hello", n) for n in range(3)], -1)
        held = died.outbox.take(10, block_ms=100)       # then killed: held, never acknowledged
        assert len(held) == 3
        with notifying(services, consumer="n1"):
            deliveries = told_once_each(services, hook, 3)

    assert deliveries == [f"{e.id}:0" for e in held] + deliveries[3:]
    assert len(set(deliveries)) == 4
    assert [r.json()["deployment"]["id"] for r in hook.received] == ["d0", "d1", "d2", "d99"]


def test_a_delivery_outlasting_claim_after_is_taken_again_by_no_notifier(workspace):
    with receiver() as hook:
        _, services = configure(workspace, [{"type": "webhook", "url": hook.url,
                                             "events": ["DeploymentQueued"]}],
                                notifier={"claim_after": "1s"})
        hook.delay = 3.0            # the first answer comes three claim_afters later
        with notifying(services, consumer="n1"), notifying(services, consumer="n2"):
            services.store.append("hello", [queued("hello", 1)], -1)
            hook.wait_until(1)
            hook.delay = 0
            deliveries = told_once_each(services, hook, 1)

    assert len(deliveries) == len(set(deliveries)) == 2
    assert [e.attempts for e in ends(services, "hello")] == [1, 1]
