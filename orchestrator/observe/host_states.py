"""Which host runs which deployment, and which lag (issue 19): the hosts the config names for
an app, read against its folded view (`AppView.hosts`: host -> the deployment it runs, as its
Host* events tell). One reading for `sluice apps`, `sluice deployments`, the API, the
dashboard and /metrics; it imports neither the events nor the config's models, so that the
short way of `sluice apps` shows it too."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from orchestrator.core.app_views import AppView

IN_STEP = "in step"             # runs the active deployment (nothing live: runs nothing)
BEHIND = "behind"               # runs another deployment than the active one, or nothing
ROLLING_OUT = "rolling out"     # switched to a deployment not ended yet: ahead of the active one


class HostRun(NamedTuple):
    host: str
    deployment_id: str | None   # what the host runs; None: nothing (or nothing recorded yet)
    state: str

    def text(self) -> str:
        """One line, as `sluice apps` and the dashboard show it."""
        mark = "" if self.state == IN_STEP else f" ({self.state})"
        return f"{self.host}: {self.deployment_id or 'nothing'}{mark}"

    def to_json(self) -> dict:
        return {"host": self.host, "deployment_id": self.deployment_id, "state": self.state,
                "text": self.text()}


def host_runs(view: AppView, hosts: Iterable[str]) -> list[HostRun]:
    """Each of `hosts` (the config's, in its order) and what it runs."""
    return [HostRun(host, view.hosts.get(host), _state(view, view.hosts.get(host))) for host in hosts]


def _state(view: AppView, runs: str | None) -> str:
    if runs == view.active_deployment:
        return IN_STEP
    d = view.deployments.get(runs or "")
    return ROLLING_OUT if d is not None and not d.terminal else BEHIND


def host_lines(states: Mapping[str, str] | None) -> list[str]:
    """A deployment's per-host states (`DeploymentView.hosts`: switched, failed: why,
    unhealthy: why, rolled back), one `host: state` line each, by host."""
    return [f"{host}: {state}" for host, state in sorted((states or {}).items())]


def named_hosts(host_lists: Iterable[Iterable[str]]) -> list[str]:
    """Every host the apps name (each app's `hosts`), once, in the order first named."""
    return list(dict.fromkeys(host for hosts in host_lists for host in hosts))
