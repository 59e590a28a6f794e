"""Prometheus metrics (GET /metrics), computed when scraped, from what Redis holds.

The worker, the poller and the API are separate processes (often on separate machines), so
no counter lives in a process's memory:

- deployment counters and histograms are folded from the apps' event streams, like the
  projections: a small per-app state (`sluice:metrics:app:{app}`, JSON, with the stream id
  it has seen) is caught up at each scrape and saved (observe/app_figures.py); it is a
  cache — deleting it and replaying gives the same figures. Only the configured apps are
  shown (an app taken out of the config keeps its events, not its figures), all read in a
  few round trips; each app's samples are kept as written (observe/metrics_text.py),
  formatted again when it moves (or its hosts in the config change, or an upgrade changed
  the families). The worker keeps an app's figures and texts current after each of its
  deployments (`keep_current`), so even the first scrape of a fleet formats only what moved
  since.
- head checks are timed by the poller, which adds each one to a hash
  (`sluice:metrics:polls`: `{source type}:le:{bound}`, `:sum`, `:count`, `:errors`).
- queue depth is the length of the Celery `deploy` queue's lists, and of each configured
  host's queue (`deploy.NAME`), read at the scrape.

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
  sluice_host_active{app,host}                       1 while the host runs the app's active deployment, 0 while it lags
  sluice_queue_depth{queue}                          messages waiting in the Celery queue (deploy, deploy.HOST)
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
import hashlib
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import cache

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from orchestrator.core import keys, replies
from orchestrator.core.projections import AppView
from orchestrator.core.statuses import IN_PROGRESS, TERMINAL
from orchestrator.deploying.task_queue import DEPLOY_QUEUE, PRIORITY_STEPS, host_queue, priority_lists
from orchestrator.observe import metrics_text, notify_view
from orchestrator.observe.app_figures import DURATION_BUCKETS, LATENCY_BUCKETS, AppFigures, Histogram, apps_figures
from orchestrator.observe.host_states import IN_STEP, host_runs, named_hosts
from orchestrator.observe.store_metrics import store_families
from orchestrator.releases.drift import DriftKind
from orchestrator.runtime.services import Services

log = logging.getLogger("sluice.metrics")

POLLS = keys.METRICS_POLLS
HEAD_CHECK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# the formats scrapers ask for (Prometheus prefers OpenMetrics), by content type, each encoder
SCRAPED_FORMATS = {content_type.partition(";")[0]: encode for encode, content_type in
                   map(choose_encoder, ("", "application/openmetrics-text"))}


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


# ---- the collector -------------------------------------------------------------------------

class SluiceCollector:
    """A prometheus_client collector reading Redis: every family of every app at once, what
    `exposition` puts together from each app's text."""

    def __init__(self, services: Services):
        self.services = services

    def collect(self) -> Iterator:
        apps = list(self.services.config.apps)      # not every app the store ever saw
        yield from app_families(apps, apps_figures(self.services, apps), self.services.projections.apps(apps),
                                _hosts(self.services, apps))
        yield from fleet_families(self.services)


class Families:
    """A collector of families read already."""

    def __init__(self, families: Iterable):
        self.families = list(families)

    def collect(self) -> Iterator:
        return iter(self.families)


def app_families(apps: list[str], figures: dict[str, AppFigures], views: Iterable[AppView],
                 hosts: Mapping[str, Sequence[str]]) -> list:
    """The families with a sample per app (or per app and host: `hosts`, the config's), of these apps."""
    return [*_deployments(apps, figures), *_now(apps, views, hosts)]


def fleet_families(services: Services) -> list:
    """The families of the whole fleet, in the order they follow the apps' families."""
    depth = GaugeMetricFamily("sluice_queue_depth", "Messages waiting in the Celery queue",
                              labels=["queue"])
    queues = [DEPLOY_QUEUE, *map(host_queue, named_hosts(app.hosts for app in services.config.apps.values()))]
    for queue, waiting in zip(queues, queue_depths(services.redis, queues)):
        depth.add_metric([queue], waiting)
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


def _now(apps: list[str], views: Iterable[AppView], hosts: Mapping[str, Sequence[str]]) -> Iterable:
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
    host_active = GaugeMetricFamily("sluice_host_active", "1 while the host runs the app's active "
                                    "deployment, 0 while it lags (behind, or mid-rollout)", labels=["app", "host"])
    for app, view in zip(apps, views):
        for run in host_runs(view, hosts.get(app, ())):
            host_active.add_metric([app, run.host], 1 if run.state == IN_STEP else 0)
        statuses = [d.status for d in view.deployments.values()]
        for status in IN_PROGRESS:
            in_progress.add_metric([app, status], statuses.count(status))
        paused.add_metric([app], 1 if view.paused else 0)
        rejected.add_metric([app], len(view.rejected))
        for kind in DriftKind:
            drift.add_metric([app, kind], 1 if view.drift and view.drift.kind == kind else 0)
    return [in_progress, paused, drift, rejected, host_active]


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
    return queue_depths(client, [queue])[0]


def queue_depths(client: redis.Redis, queues: list[str]) -> list[int]:
    """queue_depth of each, in one round trip."""
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        for key in priority_lists(queue):
            pipe.llen(key)
    lengths, steps = pipe.execute(), len(PRIORITY_STEPS)
    return [sum(lengths[i * steps:(i + 1) * steps]) for i in range(len(queues))]


def exposition(services: Services, accept: str | None = None) -> tuple[bytes, str]:
    """What a scrape receives and its content type: the Prometheus text format (0.0.4), or
    OpenMetrics when the scraper's Accept header asks for it. What `SluiceCollector` gives at
    once, put together from each app's text (observe/metrics_text.py): only the apps whose
    stream moved since their text was kept are read and formatted."""
    encode, content_type = choose_encoder(accept or "")
    fmt = content_type.partition(";")[0]
    apps = list(services.config.apps)       # not every app the store ever saw
    texts = metrics_text.kept(services.redis, fmt, stamps(services, services.store.versions(apps)))
    if moved := [app for app in apps if app not in texts]:
        fresh = _texts(services, moved, {fmt: encode})[fmt]
        metrics_text.save(services.redis, fmt, fresh)
        texts.update((app, samples) for app, (_, samples) in fresh.items())
    headers, _ = metrics_text.split(encode(_registry(app_families([], {}, [], {}))))
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


def _texts(services: Services, apps: list[str], encoders: dict) -> dict[str, dict[str, tuple[bytes, list[bytes]]]]:
    """Per format, each app's samples per family and their stamp: the stream's version they
    show (an event appended while they were read shows in one and not the other: the older,
    to read them again)."""
    figures = apps_figures(services, apps)
    views = services.projections.apps(apps)
    hosts = _hosts(services, apps)
    shown = stamps(services, {app: min(figures[app].seen, view.version) for app, view in zip(apps, views)})
    return {fmt: {app: (shown[app],
                        metrics_text.split(encode(_registry(app_families([app], figures, [view], hosts))))[1])
                  for app, view in zip(apps, views)}
            for fmt, encode in encoders.items()}


def stamps(services: Services, versions: Mapping[str, int]) -> dict[str, bytes]:
    """What each app's kept text must have been written at to be what a scrape would write now:
    its stream's version, the per-app families' layout, and the app's hosts in the config."""
    hosts = _hosts(services, list(versions))
    return {app: " ".join([str(version), _layout(), *hosts[app]]).encode() for app, version in versions.items()}


@cache
def _layout() -> str:
    """The per-app families (names, types, order) as a short hash: a text kept by a Sluice
    whose families differed (an upgrade added one) is formatted again, not joined askew."""
    return hashlib.sha256(choose_encoder("")[0](_registry(app_families([], {}, [], {})))).hexdigest()[:12]


def _hosts(services: Services, apps: list[str]) -> dict[str, list[str]]:
    """Each app's hosts in the config (none for an app it no longer names, which a worker
    finishing its deployment may still keep the text of)."""
    configured = services.config.apps
    return {app: configured[app].hosts if app in configured else [] for app in apps}


def _registry(families: list) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Families(families))
    return registry
