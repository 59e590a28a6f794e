"""When the store is scrubbed: pollers run a round of releases/scrub.py every `scrub_interval`,
in a thread of their own; of several pollers, the one that sets `sluice:scrub` (expiring after
the interval) runs it. A corrupt blob found is quarantined, logged and counted
(observe/store_metrics.py), and the apps whose live release serves it are redeployed, which
fetches it from the source again (deploying/verify.py)."""
from __future__ import annotations

import logging
import os
import socket
import threading

from orchestrator.core import keys
from orchestrator.deploying.verify import redeploy_damaged
from orchestrator.observe.store_metrics import record_corrupt_blobs, record_scrubbed
from orchestrator.releases.scrub import ScrubRound, scrub_round
from orchestrator.releases.snapshots import SnapshotStore
from orchestrator.runtime.services import Services
from orchestrator.triggers.rounds import repeat, start_rounds

log = logging.getLogger("sluice.scrub")


class Scrubber:
    def __init__(self, services: Services, store: SnapshotStore | None = None):
        self.services = services
        self._store = store
        self.holder = f"{socket.gethostname()}:{os.getpid()}"

    @property
    def store(self) -> SnapshotStore:
        if self._store is None:     # opened at the first round, not as the poller starts
            self._store = SnapshotStore(self.services.config.data_dir / "store")
        return self._store

    @property
    def interval(self) -> float:
        return self.services.config.scrub_interval

    def tick(self) -> ScrubRound | None:
        """A round, unless another poller ran one less than an interval ago (None then)."""
        if not self.services.redis.set(keys.SCRUB, self.holder, nx=True,
                                       px=max(1, int(self.interval * 1000))):
            return None
        return self.round()

    def round(self) -> ScrubRound:
        found = scrub_round(self.store, self.services.config.scrub_blobs)
        record_scrubbed(self.services.redis, found.checked)
        if found.corrupt:
            record_corrupt_blobs(self.services.redis, "scrub", len(found.corrupt))
            for sha in found.corrupt:
                log.error("store blob %s is corrupt (its content does not hash to its name): "
                          "quarantined", sha)
            redeploy_damaged(self.services, self.store)
        return found

    def run(self, stop: threading.Event) -> None:
        def round_() -> float:
            self.tick()
            return self.interval
        repeat("scrub", round_, stop, log, lambda: self.interval, first_wait=self.interval)


def start_scrubbing(services: Services, stop: threading.Event) -> threading.Thread | None:
    """The thread scrubbing the store until `stop`; none when scrub_interval is 0."""
    if services.config.scrub_interval <= 0:
        return None
    return start_rounds("scrub", Scrubber(services).run, stop)
