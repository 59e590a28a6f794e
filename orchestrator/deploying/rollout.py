"""Rolling a deployment out to its app's hosts (issue 19). The worker that built the snapshot
holds the app's lease and asks each host (`sluice worker --host NAME`, its queue
`deploy.NAME`) to switch to the deployment's release, a batch at a time (`rollout`); the
host fetches what its own store lacks, materialises, switches under the lease's fencing
token and proves the release healthy, then records HostSwitched or HostFailed. The rollout
waits for each host's word in the deployment's view, at most `host_timeout`.

All or nothing: when a host fails, or says nothing in time, the hosts already switched are
asked to converge back on the app's active deployment (HostRolledBack), and the deployment
fails naming each host and why; a release that proved unhealthy on a host has its revision
rejected (RevisionRejected), as on one machine. A host that was out of reach converges by itself when it
comes back (deploying/host_deploy.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from orchestrator.config.hosts import batches
from orchestrator.config.settings import AppConfig
from orchestrator.core import events as ev
from orchestrator.core import keys
from orchestrator.core.app_views import HOST_ROLLED_BACK, HOST_SWITCHED, HOST_UNHEALTHY, AppView
from orchestrator.core.errors import PermanentError
from orchestrator.core.lease import Lease
from orchestrator.deploying.after_switch import Record
from orchestrator.deploying.task_queue import send_host
from orchestrator.runtime.services import Services

LEASE_EVERY = 1.0       # seconds at most between two checks of the lease while hosts work


@dataclass
class Rollout:
    services: Services
    app: str
    config: AppConfig
    deployment_id: str
    revision: str
    lease: Lease
    record: Record


def roll_out(r: Rollout) -> None:
    """Every host switched; PermanentError naming the hosts that failed, after the hosts
    already switched were switched back."""
    done: list[str] = []
    for batch in batches(r.config.hosts, r.config.rollout):
        states = _ask(r, "switch", batch, r.deployment_id)
        failed = {h: states.get(h) for h in batch if states.get(h) != HOST_SWITCHED}
        if failed:
            raise PermanentError(_fail(r, failed, done + [h for h in batch if states.get(h) == HOST_SWITCHED]))
        done += batch


def _fail(r: Rollout, failed: dict[str, str | None], switched: list[str]) -> str:
    """Record what said nothing, switch back what switched; the deployment's reason."""
    silent = f"no answer within host_timeout ({r.config.host_timeout:g} s)"
    for host, state in failed.items():
        if state is None:
            r.record(ev.HostFailed, host=host, reason=silent)
    reasons = "; ".join(f"{host}: {state.partition(': ')[2] if state else silent}" for host, state in failed.items())
    if any(state and state.startswith(HOST_UNHEALTHY) for state in failed.values()):
        r.record(ev.RevisionRejected, revision=r.revision, reason=reasons)
    if not switched:
        return f"rollout failed on {reasons}"
    states = _ask(r, "revert", switched, r.deployment_id, wanted=HOST_ROLLED_BACK)
    back = [h for h in switched if states.get(h) == HOST_ROLLED_BACK]
    left = [h for h in switched if h not in back]
    return (f"rollout failed on {reasons}; switched back: {', '.join(back) or 'none'}"
            + (f"; not answering, to converge when they do: {', '.join(left)}" if left else ""))


def _ask(r: Rollout, action: str, hosts: list[str], deployment_id: str,
         wanted: str | None = None) -> dict[str, str]:
    """Send `action` to each host, then wait for each one's state in the deployment's view
    (any state, or `wanted`) until host_timeout; the states seen."""
    for host in hosts:
        send_host(r.services.redis_url, action, r.app, host, deployment_id, r.lease.token,
                  r.services.clock.now())
    clock = r.services.clock
    deadline = clock.monotonic() + r.config.host_timeout
    while True:
        r.lease.check()         # a rollout that lost the app's lease stops waiting for it
        view = r.services.projections.app(r.app)
        states = _states(view, r.deployment_id, hosts, wanted)
        left = deadline - clock.monotonic()
        if len(states) == len(hosts) or left <= 0:
            return states
        _until_news(r, view.last_id, min(left, LEASE_EVERY))


def _until_news(r: Rollout, last_id: str | None, seconds: float) -> None:
    """Back as soon as the app records an event after `last_id` (a host's word), or after
    `seconds`: the deployment ends when its last host switched, not at a next look."""
    r.services.redis.xread({keys.app_events(r.app): last_id or "0-0"}, count=1,
                           block=max(1, int(seconds * 1000)))


def _states(view: AppView, deployment_id: str, hosts: list[str], wanted: str | None) -> dict[str, str]:
    d = view.deployments.get(deployment_id)
    seen = (d.hosts if d is not None else None) or {}
    if wanted is not None:
        return {h: seen[h] for h in hosts if seen.get(h) == wanted}
    return {h: seen[h] for h in hosts if h in seen}
