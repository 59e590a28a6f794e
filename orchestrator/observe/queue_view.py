"""What waits, what runs and what is due: the facts behind `sluice queue` and GET /api/queue.

Everything is read, nothing is changed:
- queues: every Celery queue the broker knows of (kombu's binding sets
  `_kombu.binding.{exchange}`, members "routing key \\x06\\x16 pattern \\x06\\x16 queue"; the
  `deploy` queue always, and the queue of each host the config names, `deploy.NAME`, with
  its host: issue 19). kombu keeps one list per priority step (`deploy`,
  `deploy\\x06\\x163`, ...), LPUSHes new messages and BRPOPs the oldest, so what waits is the
  lists' lengths and the oldest message is at their tails; its age comes from the
  `sluice_queued_at` header `task_queue.send_deploy` puts in every message (None for messages other
  producers sent).
- in flight: deployments started and not ended (the projections), their status (building,
  deploying, activating, verifying), the worker being the holder of the app's lease (else the
  one its DeploymentStarted names), running since that attempt started.
- retries: deployments waiting after a DeploymentRetrying: the next attempt is due at the
  event's time plus its retry_in, and is attempt n+1 of the app's retry.attempts.
- polls: `sluice:poll:due`: sources due within the next minute, and those overdue (due
  more than POLL_GRACE ago and not yet claimed by a poller: is a poller running?).
- notifications: feed entries the notifiers hold unacknowledged, and the deliveries failing
  now (app, channel, event, tries, last error, next try) — observe/notify_view.py.
And `answering_workers` (for /readyz): how many workers answer a Celery ping.
"""
from __future__ import annotations

import json
import threading
import time

import redis

from orchestrator.core import events as ev
from orchestrator.core import keys, replies
from orchestrator.core.projections import AppView, DeploymentView
from orchestrator.core.statuses import DeploymentStatus
from orchestrator.deploying.task_queue import (
    DEPLOY_QUEUE,
    KOMBU_SEP,
    PRIORITY_STEPS,
    QUEUED_AT,
    celery_for,
    host_queue,
    priority_lists,
)
from orchestrator.observe import notify_view
from orchestrator.observe.formatting import iso
from orchestrator.observe.host_states import named_hosts
from orchestrator.runtime.services import Services

POLL_HORIZON = 60.0      # "due in the next minute"
POLL_GRACE = 10.0        # a poller claims due sources within about a second; then: overdue
INTERNAL_EXCHANGES = ("celery.pidbox", "reply.celery.pidbox", "celeryev")
TAIL = 500               # stream entries searched back for a deployment's latest attempt


def inspect_queue(services: Services, now: float | None = None) -> dict:
    now = services.clock.now() if now is None else now
    views = {name: services.projections.app(name) for name in services.config.apps}
    in_flight, retries = _deployments(services, views, now)
    hosts = named_hosts(app.hosts for app in services.config.apps.values())
    return {"queues": celery_queues(services.redis, now, hosts), "in_flight": in_flight,
            "retries": retries, "polls": polls(services.redis, now),
            "notifications": notify_view.notifications(services.redis, now), "at": iso(now)}


def celery_queues(client: redis.Redis, now: float, hosts: list[str]) -> list[dict]:
    """Each queue's waiting messages and the oldest one's age; `host`: the host whose queue it is."""
    of_host = {host_queue(host): host for host in hosts}
    names = queue_names(client, list(of_host))
    with client.pipeline(transaction=False) as pipe:
        for name in names:
            for key in priority_lists(name):
                pipe.llen(key)
                pipe.lindex(key, -1)
        replies = pipe.execute()
    report, steps = [], len(PRIORITY_STEPS)
    for i, name in enumerate(names):
        mine = replies[i * 2 * steps:(i + 1) * 2 * steps]
        sent = [t for t in (_queued_at(m) for m in mine[1::2]) if t is not None]
        report.append({"name": name, "host": of_host.get(name), "waiting": sum(mine[0::2]),
                       "oldest_age": _seconds(now - min(sent)) if sent else None})
    return report


def queue_names(client: redis.Redis, hosts: list[str]) -> list[str]:
    """`deploy` first, then the hosts' queues (`hosts`: whether bound yet or not), then every
    other queue bound to an exchange, by name."""
    found = set()
    for key in client.scan_iter(match="_kombu.binding.*", count=500):
        exchange = replies.text(key)[len("_kombu.binding."):]
        if exchange in INTERNAL_EXCHANGES or exchange.endswith(".pidbox"):
            continue
        for member in client.smembers(key):
            queue = replies.text(member).split(KOMBU_SEP)[-1]
            if queue:
                found.add(queue)
    found.discard(DEPLOY_QUEUE)
    return [DEPLOY_QUEUE, *hosts, *sorted(found - set(hosts))]


def polls(client: redis.Redis, now: float) -> dict:
    due = replies.scored(client.zrangebyscore(keys.POLL_DUE, "-inf", now + POLL_HORIZON, withscores=True))
    soon, overdue = [], []
    for member, at in due:
        if at < now - POLL_GRACE:
            overdue.append({"app": replies.text(member), "late_by": _seconds(now - at)})
        else:
            soon.append({"app": replies.text(member), "due_in": _seconds(max(0.0, at - now))})
    return {"due_next_minute": soon, "overdue": overdue}


def _deployments(services: Services, views: dict[str, AppView], now: float):
    """Deployments running (in flight) and waiting for their next attempt (retries)."""
    running = {name: [d for d in v.deployments.values() if d.status.running]
               for name, v in views.items()}
    retrying = {name: [d for d in v.deployments.values() if d.status == DeploymentStatus.PENDING and d.attempts]
                for name, v in views.items()}
    holders = _lease_holders(services.redis, [name for name, ds in running.items() if ds])
    in_flight, retries = [], []
    for name in views:
        if not running[name] and not retrying[name]:
            continue
        latest = _latest_attempts(services.redis, name,
                                  {d.id for d in running[name] + retrying[name]})
        in_flight += [_in_flight(name, d, latest.get(d.id), holders.get(name), now)
                      for d in running[name]]
        attempts = services.config.apps[name].retry.attempts
        retries += [_retry(name, d, latest.get(d.id), attempts, now) for d in retrying[name]]
    in_flight.sort(key=lambda r: -(r["running_for"] or 0))
    retries.sort(key=lambda r: r["due_at"] or "")
    return in_flight, retries


def _in_flight(app: str, d: DeploymentView, started: ev.Event | None, holder: str | None,
               now: float) -> dict:
    if not isinstance(started, ev.DeploymentStarted):
        started = None          # further back than TAIL events: the first start will do
    since = started.at if started else d.started_at
    return {"worker": holder or (started.worker if started else None), "app": app,
            "deployment_id": d.id, "status": d.status,
            "running_for": _seconds(now - since) if since else None}


def _retry(app: str, d: DeploymentView, retrying: ev.Event | None, attempts: int,
           now: float) -> dict:
    due = (retrying.at + retrying.retry_in
           if isinstance(retrying, ev.DeploymentRetrying) else None)
    return {"app": app, "deployment_id": d.id, "attempt": d.attempts + 1, "of": attempts,
            "due_at": iso(due), "due_in": _seconds(max(0.0, due - now)) if due is not None else None}


def _lease_holders(client: redis.Redis, apps: list[str]) -> dict[str, str]:
    """app -> holder of its lease ("{fencing token}:{holder}")."""
    if not apps:
        return {}
    values = client.mget([keys.lease(a) for a in apps])
    return {a: replies.text(v).partition(":")[2] for a, v in zip(apps, values) if v}


def _latest_attempts(client: redis.Redis, app: str, ids: set[str]) -> dict[str, ev.Event]:
    """Each deployment's newest DeploymentStarted or DeploymentRetrying, from the stream's end."""
    found: dict[str, ev.Event] = {}
    for _, fields in replies.entries(client.xrevrange(keys.app_events(app), "+", "-", count=TAIL)):
        kind = replies.text(fields.get(b"type", b""))
        if kind not in (ev.EventType.DEPLOYMENT_STARTED, ev.EventType.DEPLOYMENT_RETRYING):
            continue
        e = ev.Event.from_fields(replies.text_fields(fields))
        if isinstance(e, ev.DeploymentStarted | ev.DeploymentRetrying) \
                and e.deployment_id in ids and e.deployment_id not in found:
            found[e.deployment_id] = e
            if len(found) == len(ids):
                break
    return found


def _queued_at(raw: bytes | None) -> float | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw).get("headers", {}).get(QUEUED_AT)
        return float(value) if value is not None else None
    except (ValueError, TypeError, AttributeError):
        return None         # not a kombu message we understand: no age


def _seconds(value: float) -> float:
    return round(value, 3)


_ping_lock = threading.Lock()       # a Celery app has one reply queue: one ping at a time
_pings: dict[str, tuple[float, int]] = {}      # broker URL -> (when, workers that answered)
PING_TIMEOUT = 0.5
PING_MEMORY = 2.0


def answering_workers(services: Services) -> int:
    """How many Celery workers answer a ping (workers run without gossip, so there are no
    heartbeats to read); remembered for PING_MEMORY seconds, so probes cost one ping."""
    url = services.redis_url
    with _ping_lock:
        at, seen = _pings.get(url, (float("-inf"), 0))
        if time.monotonic() - at > PING_MEMORY:
            seen = len(celery_for(url).control.ping(timeout=PING_TIMEOUT) or [])
            _pings[url] = (time.monotonic(), seen)
        return seen
