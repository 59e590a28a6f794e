"""Hooks of the built-in repositories: `python -m orchestrator.triggers.git_hooks post-receive APP`.

The API runs `git http-backend` with SLUICE_CONFIG, SLUICE_DATA_DIR and SLUICE_REDIS_URL set,
and the hook inherits them, so it reads the same config and Redis as the API. What it
prints, the pusher sees as `remote: ...`. It never fails: the refs are already updated when
it runs, so an error is only reported.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

from orchestrator.config.settings import load_config
from orchestrator.deploying.dispatch import Queued
from orchestrator.deploying.sync import deploy_head
from orchestrator.runtime.services import Services


@dataclass(frozen=True)
class RefUpdate:
    old: str
    new: str
    ref: str

    @property
    def deleted(self) -> bool:
        return not self.new.strip("0")


def parse_updates(text: str) -> list[RefUpdate]:
    """post-receive's stdin: one `OLD NEW REF` line per updated ref."""
    return [RefUpdate(*line.split(maxsplit=2)) for line in text.splitlines() if line.strip()]


def post_receive(services: Services, app: str, updates: list[RefUpdate]) -> list[str]:
    """Queue a deployment for a push that moves a localgit app's branch; one line per ref."""
    if app not in services.config.apps:
        return [f"sluice: {app} is not configured (any more); the push was stored, not deployed"]
    source = services.config.apps[app].source
    if source.type != "localgit":
        return [f"sluice: {u.ref} stored; {app} deploys from its {source.type} source, "
                "not from pushes here" for u in updates]
    return [_on_localgit(services, app, source.branch, u) for u in updates]


def _on_localgit(services: Services, app: str, branch: str, update: RefUpdate) -> str:
    if update.ref != f"refs/heads/{branch}":
        return f"sluice: {update.ref} stored, not deployed ({app} deploys pushes to {branch})"
    if update.deleted:
        return f"sluice: branch {branch} deleted; nothing deployed, the live release stays"
    # the branch's head, read now, deploys: of two pushes whose hooks race, the later wins
    return _describe(app, deploy_head(services, app, "push"))


def _describe(app: str, queued: Queued) -> str:
    if queued.new:
        return (f"sluice: deployment {queued.deployment_id} of {queued.revision[:12]} queued "
                f"for {app} (sluice deployments {app})")
    return f"sluice: nothing new queued for {app}: {queued.reason}"


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "post-receive":
        print("usage: python -m orchestrator.triggers.git_hooks post-receive APP")
        return 2
    app = argv[1]
    updates = sys.stdin.read()
    try:
        lines = post_receive(Services.build(load_config()), app, parse_updates(updates))
    except Exception as exc:     # the push went through; say why nothing was deployed
        lines = [f"sluice: the push to {app} was stored but nothing was deployed: {exc}"]
    print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
