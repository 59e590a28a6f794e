"""The notifier: feed entries from the outbox, each app's in order (lanes.py), each told to
the channels that want it, with tries and backoff; the entry acknowledged once every channel
had it or gave up. A delivery's end is recorded on the app's stream: NotificationDelivered,
or NotificationFailed with the receiver's answer (what `sluice log` and the history show).

Nothing here is on a deployment's path: the notifier is a process of its own (`sluice
notifier`, started by `sluice up` when a channel is configured), and a slow or dead receiver
holds up only that app's later notifications.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import httpx

from orchestrator.config.notify import Channel
from orchestrator.core import events as ev
from orchestrator.core.event_log import ANY_VERSION
from orchestrator.notifying.delivery import Outcome, Request, send
from orchestrator.notifying.failing import Failing
from orchestrator.notifying.lanes import Lanes
from orchestrator.notifying.messages import Notification, notification, wanted
from orchestrator.notifying.moment import view_at
from orchestrator.notifying.outbox import FeedEntry, Outbox
from orchestrator.notifying.render import request_for
from orchestrator.runtime.services import Services

log = logging.getLogger("sluice.notifier")
BATCH = 100
HELD_AT_MOST = 1000         # entries taken and not yet done: no more are taken beyond this


class Notifier:
    def __init__(self, services: Services, consumer: str, client: httpx.Client | None = None,
                 wait: Callable[[float], bool] | None = None):
        self.services, self.config = services, services.config
        self.outbox = Outbox(services.redis, consumer)
        self.client = client or httpx.Client(follow_redirects=False)
        self.failing = Failing(services.redis)
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait        # True: stopped while waiting
        self._held: set[str] = set()                # entries taken and not yet handled
        self._held_lock = threading.Lock()

    def run(self, stop: threading.Event) -> None:
        self.outbox.ensure_group()
        lanes: Lanes[FeedEntry] = Lanes(self._handle_held, self.config.notifier.concurrency)
        claim_ms = int(self.config.notifier.claim_after * 1000)
        # a turn lasts a third of claim_after at most: what is held is kept well in time
        turn_ms, kept_at = max(10, min(1000, claim_ms // 3)), time.monotonic()
        try:
            while not stop.is_set():
                if lanes.waiting() >= HELD_AT_MOST:
                    stop.wait(turn_ms / 1000)
                else:
                    # what is claimed came before anything new: put in its lanes first
                    entries = self.outbox.claim(claim_ms, BATCH) + self.outbox.take(BATCH, block_ms=turn_ms)
                    for entry in self._newly_held(entries):
                        lanes.put(entry.app, entry)
                if time.monotonic() - kept_at >= claim_ms / 2000:
                    with self._held_lock:
                        held = list(self._held)
                    self.outbox.keep(held)
                    kept_at = time.monotonic()
        finally:
            self._stop.set()
            lanes.stop()

    def _newly_held(self, entries: list[FeedEntry]) -> list[FeedEntry]:
        """Those not in hand already: a claim may give back an entry this notifier holds, and
        its own backlog, read at its start, holds what it has just claimed."""
        new = []
        with self._held_lock:
            for entry in entries:
                if entry.id not in self._held:
                    self._held.add(entry.id)
                    new.append(entry)
        return new

    def _handle_held(self, app: str, entry: FeedEntry) -> None:
        try:
            self.handle(app, entry)
        finally:
            with self._held_lock:
                self._held.discard(entry.id)

    def handle(self, app: str, entry: FeedEntry) -> None:
        """Tell every channel that wants it; acknowledge unless stopped half way (then the
        entry stays pending, and is delivered again after the restart)."""
        channels = [c for c in self.channels(app) if wanted(c.type, c.events, str(entry.event.type))]
        if channels:
            view = view_at(self.services.projections, app, entry.event, entry.version)
            note = notification(entry.id, app, entry.event, view, self.config.public_url)
            for n, channel in enumerate(channels):
                request = request_for(channel, note, f"{entry.id}:{n}", view, self.config)
                if request is not None and not self._deliver(app, channel, n, note, request):
                    return          # stopped: not acknowledged
        self.outbox.ack(entry.id)

    def channels(self, app: str) -> list[Channel]:
        config = self.config.apps.get(app)
        return [*self.config.notify, *config.notify] if config is not None else []

    def _deliver(self, app: str, channel: Channel, n: int, note: Notification, request: Request) -> bool:
        """Tries until delivered, refused, or out of tries (each end recorded); False if the
        notifier stopped meanwhile."""
        settings, delivery = self.config.notifier, f"{note.delivery}:{n}"
        for attempt in range(1, settings.attempts + 1):
            outcome = send(self.client, request, channel.timeout)
            if outcome.delivered or not outcome.retry or attempt == settings.attempts:
                self._record_end(app, channel, delivery, note, attempt, outcome)
                return True
            wait = outcome.after if outcome.after is not None else \
                min(settings.max_backoff, settings.backoff * 2 ** (attempt - 1))
            self.failing.note(delivery, app, channel.type, note.type, attempt, outcome.detail, wait)
            log.warning("%s: %s delivery of %s failed (try %d of %d, next in %.0fs): %s", app,
                        channel.type, note.type, attempt, settings.attempts, wait, outcome.detail)
            if self._wait(wait):
                return False
        return True

    def _record_end(self, app: str, channel: Channel, delivery: str, note: Notification,
                    attempts: int, outcome: Outcome) -> None:
        self.failing.done(delivery)
        now = self.services.clock.now()
        deployment_id = getattr(note.event, "deployment_id", None)     # its log shows the end
        if outcome.delivered:
            event: ev.Event = ev.NotificationDelivered(
                app=app, at=now, delivery=delivery, event=note.type, channel=channel.type,
                attempts=attempts, status=outcome.status or 0, deployment_id=deployment_id)
        else:
            log.error("%s: %s delivery of %s failed for good: %s", app, channel.type, note.type,
                      outcome.detail)
            event = ev.NotificationFailed(app=app, at=now, delivery=delivery, event=note.type,
                                          channel=channel.type, attempts=attempts,
                                          reason=outcome.detail, deployment_id=deployment_id)
        self.services.store.append(app, [event], ANY_VERSION)
