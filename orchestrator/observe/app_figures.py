"""Each app's deployment figures for /metrics (observe/metrics.py), folded from its event stream
as the projections fold views: a small state per app (`sluice:metrics:app:{app}`, JSON, with the
stream id it has seen), caught up at each scrape and saved. A cache: deleting it and replaying
gives the same figures."""
from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass, field

import orjson

from orchestrator.core import events as ev
from orchestrator.core import keys, replies
from orchestrator.core.event_log import RecordedEvent
from orchestrator.core.statuses import FINAL_STATUS, DeploymentStatus
from orchestrator.runtime.services import Services

STATE_VERSION = 3          # 2: rollbacks, 3: notifications (an older cache is replayed)
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
LATENCY_BUCKETS = (0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
REMEMBERED_CHANGES = 100    # revisions detected and not yet live, kept for change-to-live


def app_state_key(app: str) -> str:
    return keys.metrics_app(app)


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
