"""GET /api/events: Server-Sent Events from `sluice:feed`, through a real uvicorn server
(as `sluice api` runs it) and a streaming httpx client."""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx

from orchestrator.api import feed_hub, observe
from orchestrator.deploying.sync import sync_now
from tests.helpers import FUNCTION_APP, git_app, wait_for
from tests.integration.flow import event_types, wait_until_ended
from tests.servers.api_server import serving

DEPLOYMENT = ["ChangeDetected", "DeploymentQueued", "DeploymentStarted", "SnapshotBuilt",
              "DeploymentSwitched", "DeploymentSucceeded"]




@contextmanager
def following(base: str, headers: dict | None = None, **params) -> Iterator[Iterator[dict]]:
    """The stream's messages: {"id", "event", "data"} each, or {"comment"}."""
    with httpx.Client(base_url=base, timeout=httpx.Timeout(30)) as client:
        with client.stream("GET", "/api/events", params=params, headers=headers or {}) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            yield _messages(response.iter_lines())


def _messages(lines: Iterator[str]) -> Iterator[dict]:
    message: dict = {}
    for line in lines:
        if not line:
            if message:
                yield message
            message = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            name, _, value = line.partition(":")
            message[name] = value[1:] if value.startswith(" ") else value


def events_until(messages: Iterator[dict], last_type: str) -> list[dict]:
    received = []
    for message in messages:
        if "event" in message:
            received.append({**message, "data": json.loads(message["data"])})
            if message["event"] == last_type:
                return received
    raise AssertionError("the stream ended")


def test_a_client_receives_a_deployments_events_in_order_as_they_happen(workspace):
    _, services = workspace.app_with(FUNCTION_APP)
    with serving(services) as base, following(base, app="hello") as messages:
        queued = sync_now(services, "hello")

        received = events_until(messages, "DeploymentSucceeded")

    assert [m["event"] for m in received] == DEPLOYMENT
    assert [m["data"]["type"] for m in received] == DEPLOYMENT
    assert all(m["data"]["app"] == "hello" and m["data"]["at"].endswith("Z") for m in received)
    assert [m["data"]["version"] for m in received] == list(range(1, len(DEPLOYMENT) + 1))
    assert all(m["data"]["deployment_id"] == queued.deployment_id for m in received[1:])
    stored = [r.id for r in services.store.read("hello")]
    feed = [m["id"] for m in received]
    assert feed == sorted(feed, key=lambda i: tuple(map(int, i.split("-")))) and len(set(feed)) == len(DEPLOYMENT)
    assert len(stored) == len(DEPLOYMENT)


def test_reconnecting_with_last_event_id_resumes_right_after_that_event(workspace):
    _, services = workspace.app_with(FUNCTION_APP)
    with serving(services) as base:
        with following(base, app="hello") as messages:
            sync_now(services, "hello")
            first = events_until(messages, "DeploymentQueued")
        # disconnected: the deployment goes on
        wait_for(lambda: "DeploymentSucceeded" in event_types(services, "hello"), what="success")

        with following(base, {"Last-Event-ID": first[-1]["id"]}) as messages:
            rest = events_until(messages, "DeploymentSucceeded")

    assert [m["event"] for m in first + rest] == DEPLOYMENT


def test_since_zero_replays_the_feed_from_its_start(workspace):
    _, services = workspace.app_with(FUNCTION_APP)
    queued = sync_now(services, "hello")
    wait_until_ended(services, "hello", queued.deployment_id)
    with serving(services) as base, following(base, since="0") as messages:
        received = events_until(messages, "DeploymentSucceeded")

    assert [m["event"] for m in received] == DEPLOYMENT


def test_the_app_filter_keeps_other_apps_events_out(workspace):
    repo = workspace.repo()
    repo.commit(FUNCTION_APP)
    services = workspace.configure({"hello": git_app(repo, workspace.target("hello")),
                                    "other": git_app(repo, workspace.target("other"))})
    with serving(services) as base, following(base, app="hello") as messages:
        other = sync_now(services, "other")
        wait_until_ended(services, "other", other.deployment_id)
        sync_now(services, "hello")

        received = events_until(messages, "DeploymentSucceeded")

    assert {m["data"]["app"] for m in received} == {"hello"}
    assert [m["event"] for m in received] == DEPLOYMENT


def test_a_quiet_stream_gets_heartbeat_comments(workspace, monkeypatch):
    _, services = workspace.app_with(FUNCTION_APP)
    monkeypatch.setattr(observe, "HEARTBEAT_SECONDS", 0.2)
    with serving(services) as base, following(base) as messages:
        comments = []
        for message in messages:
            comments.append(message.get("comment"))
            if comments.count("heartbeat") == 2:
                break

    assert comments[0].startswith("sluice events after ")


def test_many_streams_share_one_reader_of_the_feed_and_each_gets_every_event_in_order(workspace):
    _, services = workspace.app_with(FUNCTION_APP)
    streams = 40
    with serving(services) as base, ExitStack() as opened:
        with following(base, app="hello") as first:         # the process's reader is running
            next(first)
            before = len(services.redis.client_list())
            followers = [opened.enter_context(following(base, **({"app": "hello"} if i % 2 else {})))
                         for i in range(streams)]
            for messages in followers:
                next(messages)          # the stream's opening comment: it is following
            during = len(services.redis.client_list())
            readers = [c for c in services.redis.client_list() if c.get("name") == feed_hub.READER_NAME]
            sync_now(services, "hello")

            received = [events_until(messages, "DeploymentSucceeded") for messages in followers]
            after = len(services.redis.client_list())

    assert max(during, after) - before <= feed_hub.POOL_SIZE and len(readers) == 1
    assert all([m["event"] for m in got] == DEPLOYMENT for got in received)
    assert len({tuple(m["id"] for m in got) for got in received}) == 1


def test_a_malformed_last_event_id_is_refused_and_an_unknown_app_is_not_found(workspace):
    _, services = workspace.app_with(FUNCTION_APP)
    with serving(services) as base, httpx.Client(base_url=base, timeout=10) as client:
        bad = client.get("/api/events", headers={"Last-Event-ID": "yesterday"})
        unknown = client.get("/api/events", params={"app": "nope"})

    assert bad.status_code == 400 and "yesterday" in bad.json()["error"]
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"]
