"""When drift checks run: pollers check every app's target each `drift_check` seconds, and at
start, in a thread of their own (a slow head check never delays a repair).

Of several pollers, one runs each round: `sluice:drift:due` holds when the next round is due,
and a poller claims a round by moving it one interval ahead in one Lua script. A repair takes
the app's lease besides (deploying/drift.py), so a round never races a deployment either.
"""
from __future__ import annotations

import logging
import threading

import redis

from orchestrator.core import keys
from orchestrator.deploying.drift import check_app
from orchestrator.runtime.services import Services
from orchestrator.triggers.rounds import repeat, start_rounds

log = logging.getLogger("sluice.drift")

# A due time further ahead than one interval was set under a longer drift_check: claim now.
_CLAIM = """
local due = tonumber(redis.call('GET', KEYS[1]) or '0')
local now, interval = tonumber(ARGV[1]), tonumber(ARGV[2])
if due > now and due <= now + interval then return tostring(due - now) end
redis.call('SET', KEYS[1], ARGV[3])
return 'claimed'
"""


class DriftChecks:
    def __init__(self, services: Services):
        self.services = services
        self._claim = services.redis.register_script(_CLAIM)

    @property
    def interval(self) -> float:
        return self.services.config.drift_check

    def tick(self) -> tuple[dict[str, str] | None, float]:
        """Run the round if it is due and no other poller claimed it: what each app's check
        found (None: not this poller's round) and the seconds until the next round is due."""
        now = self.services.clock.now()
        claimed = self._claim(keys=[keys.DRIFT_DUE], args=[repr(now), repr(self.interval),
                                                           repr(now + self.interval)])
        if claimed != b"claimed":
            return None, float(claimed)
        outcomes = {app: self._check(app) for app in self.services.config.apps}
        return outcomes, max(0.0, now + self.interval - self.services.clock.now())

    def _check(self, app: str) -> str:
        try:
            return check_app(self.services, app)
        except redis.ConnectionError:
            raise
        except Exception as exc:   # one app's trouble does not end the round for the others
            log.warning("%s: drift check failed: %s", app, exc, exc_info=True, extra={"app": app})
            return f"failed: {exc}"

    def run(self, stop: threading.Event) -> None:
        repeat("drift checks", lambda: self.tick()[1], stop, log, lambda: self.interval)


def start_drift_checks(services: Services, stop: threading.Event) -> threading.Thread | None:
    """The thread checking drift until `stop`; none when drift_check is 0."""
    if services.config.drift_check <= 0:
        return None
    return start_rounds("drift-checks", DriftChecks(services).run, stop)
