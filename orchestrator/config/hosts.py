"""Where an app lives (issue 19): `hosts:` names the machines whose workers (`sluice worker
--host NAME`) hold its releases; `rollout:` how many switch at once; `host_timeout:` how long
a host may take to answer. No hosts: the app lives where the workers that build it run, as
before hosts existed.

An app's `target` is a path on each of its hosts; it may hold `{host}`, the host's name (for
hosts sharing a filesystem, and for tests standing several hosts on one machine)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from orchestrator.config.sources import _Strict

HOST_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
HOST_PLACEHOLDER = "{host}"


def _host_name(name: str) -> str:
    if not HOST_NAME.match(name):
        raise ValueError(f"host name {name!r} must match [a-z0-9][a-z0-9-]* (it names the host's "
                         "queue, deploy.NAME)")
    return name


HostName = Annotated[str, AfterValidator(_host_name)]


class BatchRollout(_Strict):
    batch: int = Field(ge=1)        # hosts switched at a time; the next batch after all of these


Rollout = Literal["all"] | BatchRollout


def check_hosts(hosts: list[str], target: Path) -> None:
    """Raises ValueError naming what is wrong (for the app's validator)."""
    if len(set(hosts)) != len(hosts):
        raise ValueError(f"hosts: {sorted(h for h in hosts if hosts.count(h) > 1)[0]!r} is listed twice")
    if HOST_PLACEHOLDER in str(target) and not hosts:
        raise ValueError("target: {host} names an app's host, and the app lists no hosts")


def target_on(target: Path, host: str) -> Path:
    """The app's target on `host`."""
    return Path(str(target).replace(HOST_PLACEHOLDER, host))


def batches(hosts: list[str], rollout: Rollout) -> list[list[str]]:
    """The hosts in the order they switch, a batch at a time."""
    size = len(hosts) if isinstance(rollout, str) else rollout.batch
    return [hosts[i:i + size] for i in range(0, len(hosts), max(size, 1))]
