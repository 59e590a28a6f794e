"""Prometheus metrics (GET /metrics), computed when scraped, from what Redis holds.

The worker, the poller and the API are separate processes (often on separate machines), so
no counter lives in a process's memory:

- deployment counters and histograms are folded from the apps' event streams, like the
  projections: a small per-app state (`sluice:metrics:app:{app}`, JSON, with the stream id
  it has seen) is caught up at each scrape and saved; it is a cache — deleting it and
  replaying gives the same figures. Only the configured apps are shown (an app taken out
  of the config keeps its events, not its figures), all read in a few round trips; each
  app's samples are kept as written (observe/metrics_text.py), formatted again when it moves.
  The worker keeps an app's figures and texts current after each of its deployments
  (`keep_current`), so even the first scrape of a fleet formats only what moved since.
- head checks are timed by the poller, which adds each one to a hash
  (`sluice:metrics:polls`: `{source type}:le:{bound}`, `:sum`, `:count`, `:errors`).
- queue depth is the length of the Celery `deploy` queue's lists, read at the scrape.

Metrics:
  sluice_deployments_total{app,status}               ended deployments (success, failed, skipped, superseded)
  sluice_deployment_retries_total{app}               attempts that failed and were retried
  sluice_deployments_in_progress{app,status}         pending, building, deploying, activating, verifying now
  sluice_rollbacks_total{app}                        deployments rolled back by themselves (DeploymentRolledBack)
  sluice_app_rejected_revisions{app}                 revisions rolled back that automatic triggers do not deploy
  sluice_deployment_duration_seconds{app,status}     first attempt's start to the end
  sluice_change_to_live_seconds{app}                 ChangeDetected of a revision to its DeploymentSucceeded
  sluice_app_paused{app}                             1 while automatic deployments are paused
  sluice_app_drift{app,kind}                         1 while the target is recorded in drift of that kind
  sluice_drift_repairs_total{app}                    drifts seen repaired (DriftRepaired)
  sluice_queue_depth{queue}                          messages waiting in the Celery queue
  sluice_head_checks_total{source_type}              head checks made by pollers
  sluice_poll_errors_total{source_type}              head checks that failed
  sluice_head_check_duration_seconds{source_type}    how long head checks took
  sluice_notifications_total{app,channel,result}     deliveries ended: delivered or failed (the
                                                     NotificationDelivered / NotificationFailed events)
  sluice_notifications_pending                       feed entries notifiers took and have not acknowledged
  sluice_notifications_failing                       deliveries failing now, between two tries
"""
from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field

import orjson
import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from orchestrator.core import events as ev
from orchestrator.core import keys, replies
from orchestrator.core.event_log import RecordedEvent
from orchestrator.core.projections import AppView
from orchestrator.core.statuses import FINAL_STATUS, IN_PROGRESS, TERMINAL, DeploymentStatus
from orchestrator.deploying.task_queue import DEPLOY_QUEUE, priority_lists
from orchestrator.observe import metrics_text, notify_view
from orchestrator.observe.store_metrics import store_families
from orchestrator.releases.drift import DriftKind
from orchestrator.runtime.services import Services

log = logging.getLogger("sluice.metrics")

POLLS = keys.METRICS_POLLS
STATE_VERSION = 3          # 2: rollbacks, 3: notifications (an older cache is replayed)
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
LATENCY_BUCKETS = (0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
HEAD_CHECK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
REMEMBERED_CHANGES = 100    # revisions detected and not yet live, kept for change-to-live
# the formats scrapers ask for (Prometheus prefers OpenMetrics), by content type, each encoder
SCRAPED_FORMATS = {content_type.partition(";")[0]: encode for encode, content_type in
                   map(choose_encoder, ("", "application/openmetrics-text"))}


def app_state_key(app: str) -> str:
    return keys.metrics_app(app)


# ---- what the poller records ------------------------------------------------------------

def record_head_check(client: redis.Redis, source_type: str, seconds: float) -> None:
    """Add one head check's duration to the pollers' shared figures (never fails the caller)."""
    bound = bisect.bisect_left(HEAD_CHECK_BUCKETS, seconds)
    le = repr(float(HEAD_CHECK_BUCKETS[bound])) if bound < len(HEAD_CHECK_BUCKETS) else "+Inf"
    try:
        pipe = client.pipeline(transaction=False)
        pipe.hincrby(POLLS, f"{source_type}:le:{le}", 1)
        pipe.hincrby(POLLS, f"{source_type}:count", 1)
        pipe.hincrbyfloat(POLLS, f"{source_type}:sum", seconds)
        pipe.execute()
    except redis.RedisError as exc:
        log.debug("head check figures not recorded: %s", exc)


def record_poll_error(client: redis.Redis, source_type: str) -> None:
    """Count one failed head check of a source type (never fails the caller)."""
    try:
        client.hincrby(POLLS, f"{source_type}:errors", 1)
    except redis.RedisError as exc:
        log.debug("poll error not counted: %s", exc)


# ---- deployment figures folded from events -----------------------------------------------

@dataclass
class Histogram:
    counts: list[int]       # per bucket (not cumulative), the last one +Inf
    sum: float = 0.0

    @staticmethod
    def empty(bounds: tuple) -> Histogram:
        return Histogram([0] * (len(bounds) + 1))

    def observe(self, bounds: tuple, value: float) -> None:
        self.counts[bisect.bisect_left(bounds, value)] += 1
        self.sum += value

    def buckets(self, bounds: tuple) -> list[tuple[str, int]]:
        total, out = 0, []
        for bound, count in zip([*map(str, map(float, bounds)), "+Inf"], self.counts):
            total += count
            out.append((bound, total))
        return out


@dataclass
class AppFigures:
    last_id: str | None = None
    seen: int = 0                                       # the stream's version folded so far
    ended: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    durations: dict[str, Histogram] = field(default_factory=dict)
    latency: Histogram = field(default_factory=lambda: Histogram.empty(LATENCY_BUCKETS))
    running: dict[str, list] = field(default_factory=dict)      # id -> [revision, started_at]
    changes: dict[str, float] = field(default_factory=dict)     # revision -> detected at
    drift_repairs: int = 0
    rollbacks: int = 0
    notifications: dict[str, int] = field(default_factory=dict)     # "channel:result" -> count
    version: int = STATE_VERSION

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @staticmethod
    def from_json(raw: bytes) -> AppFigures:
        data = orjson.loads(raw)
        if data.get("version") != STATE_VERSION:
            raise ValueError("figures of another version")
        data["durations"] = {k: Histogram(**h) for k, h in data["durations"].items()}
        data["latency"] = Histogram(**data["latency"])
        return AppFigures(**data)


def fold(figures: AppFigures, recorded: RecordedEvent) -> AppFigures:
    e = recorded.event
    figures.last_id, figures.seen = recorded.id, recorded.version
    if isinstance(e, ev.ChangeDetected):
        figures.changes.pop(e.revision, None)
        figures.changes[e.revision] = e.at
        while len(figures.changes) > REMEMBERED_CHANGES:
            figures.changes.pop(next(iter(figures.changes)))
    elif isinstance(e, ev.DeploymentQueued):
        figures.running[e.deployment_id] = [e.revision, None]
    elif isinstance(e, ev.DeploymentStarted) and e.deployment_id in figures.running:
        figures.running[e.deployment_id][1] = figures.running[e.deployment_id][1] or e.at
    elif isinstance(e, ev.DeploymentRetrying):
        figures.retries += 1
    elif isinstance(e, ev.DriftRepaired):
        figures.drift_repairs += 1
    elif isinstance(e, ev.NotificationDelivered | ev.NotificationFailed):
        told = f"{e.channel}:{'delivered' if isinstance(e, ev.NotificationDelivered) else 'failed'}"
        figures.notifications[told] = figures.notifications.get(told, 0) + 1
    elif isinstance(e, ev.DeploymentRolledBack):
        figures.rollbacks += 1
    elif e.type in FINAL_STATUS:
        _ended(figures, e, FINAL_STATUS[e.type])
    return figures


def _ended(figures: AppFigures, e, status: DeploymentStatus) -> None:
    label = status.value        # a plain str: orjson takes no other dict keys
    figures.ended[label] = figures.ended.get(label, 0) + 1
    revision, started = figures.running.pop(e.deployment_id, [None, None])
    if started is not None:
        figures.durations.setdefault(label, Histogram.empty(DURATION_BUCKETS)).observe(
            DURATION_BUCKETS, max(0.0, e.at - started))
    if status == DeploymentStatus.SUCCESS and revision in figures.changes:
        figures.latency.observe(LATENCY_BUCKETS, max(0.0, e.at - figures.changes.pop(revision)))


def apps_figures(services: Services, apps: list[str]) -> dict[str, AppFigures]:
    """Each app's figures, caught up with its stream (and saved for the next scrape), in a
    few round trips whatever the number of apps: the saved figures and the streams' versions
    read at once, the streams caught up at once, those that moved saved at once."""
    if not apps:
        return {}
    saved = services.redis.mget([app_state_key(app) for app in apps])
    versions = services.store.versions(apps)
    figures = {app: _saved(replies.value(raw), versions[app]) for app, raw in zip(apps, saved)}
    new = services.store.read_many({app: f.last_id for app, f in figures.items()})
    moved = {}
    for app, f in figures.items():
        for r in new[app]:
            fold(f, r)
        if new[app]:
            moved[app_state_key(app)] = f.to_json()
    if moved:
        services.redis.mset(moved)
    return figures


def _saved(raw: bytes | None, version: int) -> AppFigures:
    """The saved figures to go on from, or new ones to replay into: when none were saved,
    they are another version's or they saw more than the stream holds (it was recreated)."""
    try:
        figures = AppFigures.from_json(raw) if raw else None
    except (ValueError, TypeError, KeyError):
        figures = None
    return figures if figures is not None and figures.seen <= version else AppFigures()


# ---- the collector -------------------------------------------------------------------------

class SluiceCollector:
    """A prometheus_client collector reading Redis: every family of every app at once, what
    `exposition` puts together from each app's text."""

    def __init__(self, services: Services):
        self.services = services

    def collect(self) -> Iterator:
        apps = list(self.services.config.apps)      # not every app the store ever saw
        yield from app_families(apps, apps_figures(self.services, apps), self.services.projections.apps(apps))
        yield from fleet_families(self.services)


class Families:
    """A collector of families read already."""

    def __init__(self, families: Iterable):
        self.families = list(families)

    def collect(self) -> Iterator:
        return iter(self.families)


def app_families(apps: list[str], figures: dict[str, AppFigures], views: Iterable[AppView]) -> list:
    """The families with a sample per app, of these apps."""
    return [*_deployments(apps, figures), *_now(apps, views)]


def fleet_families(services: Services) -> list:
    """The families of the whole fleet, in the order they follow the apps' families."""
    depth = GaugeMetricFamily("sluice_queue_depth", "Messages waiting in the Celery queue",
                              labels=["queue"])
    depth.add_metric([DEPLOY_QUEUE], queue_depth(services.redis, DEPLOY_QUEUE))
    return [depth, *_polls(services), *store_families(services.redis), *_notifying(services)]


def _deployments(apps: list[str], figures: dict[str, AppFigures]) -> Iterable:
    ended = CounterMetricFamily("sluice_deployments", "Deployments ended, by app and status",
                                labels=["app", "status"])
    retries = CounterMetricFamily("sluice_deployment_retries",
                                  "Deployment attempts that failed and were retried", labels=["app"])
    durations = HistogramMetricFamily(
        "sluice_deployment_duration_seconds",
        "Seconds from a deployment's first start to its end, by app and status",
        labels=["app", "status"])
    latency = HistogramMetricFamily(
        "sluice_change_to_live_seconds",
        "Seconds from a revision's ChangeDetected to its DeploymentSucceeded", labels=["app"])
    repairs = CounterMetricFamily("sluice_drift_repairs",
                                  "Drifts of the app's target seen repaired", labels=["app"])
    rollbacks = CounterMetricFamily("sluice_rollbacks", "Deployments that failed after the "
                                    "switch and rolled back by themselves", labels=["app"])
    for app in apps:
        f = figures[app]
        for status in TERMINAL:
            ended.add_metric([app, status], f.ended.get(status, 0))
        retries.add_metric([app], f.retries)
        for label, h in f.durations.items():
            durations.add_metric([app, label], h.buckets(DURATION_BUCKETS), h.sum)
        latency.add_metric([app], f.latency.buckets(LATENCY_BUCKETS), f.latency.sum)
        repairs.add_metric([app], f.drift_repairs)
        rollbacks.add_metric([app], f.rollbacks)
    notifications = CounterMetricFamily("sluice_notifications", "Notifications ended, by app, "
                                        "channel type and result (delivered, failed)",
                                        labels=["app", "channel", "result"])
    for app in apps:
        for told, count in sorted(figures[app].notifications.items()):
            notifications.add_metric([app, *told.split(":", 1)], count)
    return [ended, retries, durations, latency, repairs, rollbacks, notifications]


def _now(apps: list[str], views: Iterable[AppView]) -> Iterable:
    in_progress = GaugeMetricFamily("sluice_deployments_in_progress",
                                    "Deployments not ended, by app and status",
                                    labels=["app", "status"])
    paused = GaugeMetricFamily("sluice_app_paused",
                               "1 while the app's automatic deployments are paused", labels=["app"])
    drift = GaugeMetricFamily("sluice_app_drift",
                              "1 while the app's target is recorded in drift of this kind",
                              labels=["app", "kind"])
    rejected = GaugeMetricFamily("sluice_app_rejected_revisions",
                                 "Revisions that rolled back, which automatic triggers do not "
                                 "deploy again", labels=["app"])
    for app, view in zip(apps, views):
        statuses = [d.status for d in view.deployments.values()]
        for status in IN_PROGRESS:
            in_progress.add_metric([app, status], statuses.count(status))
        paused.add_metric([app], 1 if view.paused else 0)
        rejected.add_metric([app], len(view.rejected))
        for kind in DriftKind:
            drift.add_metric([app, kind], 1 if view.drift and view.drift.kind == kind else 0)
    return [in_progress, paused, drift, rejected]


def _polls(services: Services) -> Iterable:
    raw = replies.text_fields(replies.hash_fields(services.redis.hgetall(POLLS)))
    checks = CounterMetricFamily("sluice_head_checks", "Head checks made by pollers",
                                 labels=["source_type"])
    errors = CounterMetricFamily("sluice_poll_errors", "Head checks that failed, by source type",
                                 labels=["source_type"])
    durations = HistogramMetricFamily("sluice_head_check_duration_seconds",
                                      "Seconds a head check took, by source type",
                                      labels=["source_type"])
    for kind in sorted({k.partition(":")[0] for k in raw}):
        counts = [int(raw.get(f"{kind}:le:{float(b)!r}", 0)) for b in HEAD_CHECK_BUCKETS]
        h = Histogram(counts + [int(raw.get(f"{kind}:le:+Inf", 0))], float(raw.get(f"{kind}:sum", 0)))
        checks.add_metric([kind], int(raw.get(f"{kind}:count", 0)))
        errors.add_metric([kind], int(raw.get(f"{kind}:errors", 0)))
        durations.add_metric([kind], h.buckets(HEAD_CHECK_BUCKETS), h.sum)
    return [checks, errors, durations]


def _notifying(services: Services) -> Iterable:
    pending = GaugeMetricFamily("sluice_notifications_pending", "Feed entries notifiers took "
                                "and have not acknowledged (not yet told to every channel)")
    pending.add_metric([], notify_view.pending(services.redis))
    failing = GaugeMetricFamily("sluice_notifications_failing",
                                "Deliveries failing now, between two tries")
    failing.add_metric([], notify_view.failing_count(services.redis))
    return [pending, failing]


def queue_depth(client: redis.Redis, queue: str) -> int:
    """Messages waiting in a Celery queue on the Redis transport (all its priority lists)."""
    pipe = client.pipeline(transaction=False)
    for key in priority_lists(queue):
        pipe.llen(key)
    return sum(pipe.execute())


def exposition(services: Services, accept: str | None = None) -> tuple[bytes, str]:
    """What a scrape receives and its content type: the Prometheus text format (0.0.4), or
    OpenMetrics when the scraper's Accept header asks for it. What `SluiceCollector` gives at
    once, put together from each app's text (observe/metrics_text.py): only the apps whose
    stream moved since their text was kept are read and formatted."""
    encode, content_type = choose_encoder(accept or "")
    fmt = content_type.partition(";")[0]
    apps = list(services.config.apps)       # not every app the store ever saw
    texts = metrics_text.kept(services.redis, fmt, services.store.versions(apps))
    if moved := [app for app in apps if app not in texts]:
        fresh = _texts(services, moved, {fmt: encode})[fmt]
        metrics_text.save(services.redis, fmt, fresh)
        texts.update((app, samples) for app, (_, samples) in fresh.items())
    headers, _ = metrics_text.split(encode(_registry(app_families([], {}, []))))
    rest = encode(_registry(fleet_families(services)))
    return metrics_text.joined(headers, [texts[app] for app in apps], rest), content_type


def keep_current(services: Services, apps: list[str]) -> None:
    """The apps' figures caught up and their text kept in each format a scraper asks for
    (what the worker does after each deployment; never fails the caller): a scrape, the
    first of a fleet never scraped too, then puts kept texts together, folding and formatting
    only the apps that moved since, not every app's whole history."""
    try:
        for fmt, samples in _texts(services, apps, SCRAPED_FORMATS).items():
            metrics_text.save(services.redis, fmt, samples)
    except redis.RedisError as exc:
        log.warning("metrics of %s not kept (the next scrape folds them): %s", ", ".join(apps), exc)


def _texts(services: Services, apps: list[str], encoders: dict) -> dict[str, dict[str, tuple[int, list[bytes]]]]:
    """Per format, each app's samples per family and the stream's version they show (an event
    appended while they were read shows in one and not the other: the older, to read them again)."""
    figures = apps_figures(services, apps)
    views = services.projections.apps(apps)
    return {fmt: {app: (min(figures[app].seen, view.version),
                        metrics_text.split(encode(_registry(app_families([app], figures, [view]))))[1])
                  for app, view in zip(apps, views)}
            for fmt, encode in encoders.items()}


def _registry(families: list) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Families(families))
    return registry
