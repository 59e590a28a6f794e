"""Bring an app to its source's head: the head check shared by the poller, `sluice sync`,
webhooks and pushes, and the record each head check leaves (the head's revision and the
source's cursor, so the next check lists only what changed since).

A trigger only says "look now": what is deployed is the head the source shows when asked,
compared with what is live, never with what some trigger named or what was seen last. So a
late or replayed trigger cannot put an older revision live, and one that was put live
anyway is replaced at the next head check.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

from orchestrator.core import keys, replies
from orchestrator.core.coalesce import Coalesced
from orchestrator.core.projections import AppView
from orchestrator.core.statuses import DeploymentStatus
from orchestrator.deploying.dispatch import Queued, behind_head, request_deployment
from orchestrator.runtime.services import Services
from orchestrator.sources import fingerprint, source_for
from orchestrator.sources.base import Source


@dataclass(frozen=True)
class Head:
    revision: str       # what the source's head amounts to
    cursor: str         # what its next head check starts from


def read_head(services: Services, name: str, fallback: bool = True) -> Head | None:
    """The last head check's record under the current source settings; else (with
    `fallback`) the last revision queued, which is a git or hg source's cursor too."""
    raw = replies.value(services.redis.hget(keys.POLL_CURSOR, name))
    if raw:
        parts = raw.decode().split(" ", 2)
        if len(parts) == 3 and parts[0] == fingerprint(services.config.apps[name]):
            return Head(parts[1], parts[2])
    revision = services.projections.app(name).last_revision if fallback else None
    return Head(revision, revision) if revision else None


def read_cursor(services: Services, name: str, fallback: bool = True) -> str | None:
    head = read_head(services, name, fallback)
    return head.cursor if head else None


def write_head(services: Services, name: str, head: Head) -> None:
    services.redis.hset(keys.POLL_CURSOR, name,
                        f"{fingerprint(services.config.apps[name])} {head.revision} {head.cursor}")


def check_head(services: Services, name: str, source: Source) -> tuple[Head, bool]:
    """The source's head now, and whether it moved since the last check."""
    known = read_head(services, name)
    change = source.latest(known.cursor if known else None)
    if change is None:
        assert known is not None, "asked without a cursor, a source answers with its head"
        return known, False
    head = Head(change.revision, change.cursor)
    write_head(services, name, head)
    return head, True


def deploy_head(services: Services, name: str, trigger: str) -> Queued:
    """An automatic trigger (poll, webhook, push): check the source and deploy its head if it
    moved, or if the app is not on it and nothing said it should stay (`behind_head`).
    Concurrent triggers of one app share head checks (core.coalesce): each is answered by a
    check that started after it arrived, and a burst of them costs a check or two."""
    return answer_head_check(services, name, ask_head_check(services, name), trigger)


def ask_head_check(services: Services, name: str) -> int:
    """A trigger's place in the app's head checks; `answer_head_check` may follow later."""
    return _head_checks(services, name).ask()


def answer_head_check(services: Services, name: str, ticket: int, trigger: str) -> Queued:
    """`deploy_head` for a trigger that asked already: what a check begun after it decided."""
    queued, ran = _head_checks(services, name).answer(
        ticket, lambda: _to_head(services, name, trigger, when_behind=True), _encode, _decode)
    return queued if ran else replace(queued, new=False)


def head_checks_pending(services: Services, name: str) -> bool:
    """Whether a trigger of the app still waits for its head check."""
    return _head_checks(services, name).pending()


def _head_checks(services: Services, name: str) -> Coalesced:
    return Coalesced(services.redis, keys.head_check(name))


def sync_now(services: Services, name: str, trigger: str = "manual", rebuild: bool = False,
             force: bool = False) -> Queued:
    """The portal's Sync button: take the source's head now and deploy it (a deployment
    of what is already live ends as skipped); `rebuild`: its build ignores the layer cache;
    `force`: deploy the head even if it was rejected (it rolled back by itself)."""
    return _to_head(services, name, trigger, when_behind=False, rebuild=rebuild, force=force)


def _to_head(services: Services, name: str, trigger: str, when_behind: bool,
             rebuild: bool = False, force: bool = False) -> Queued:
    source = source_for(services.config.apps[name], services.config.data_dir)
    moved = [False]

    def head() -> str:      # read again if another writer appended meanwhile
        found, changed = check_head(services, name, source)
        moved[0] = moved[0] or changed
        return found.revision

    def wanted(view: AppView, revision: str) -> bool:
        return not when_behind or moved[0] or behind_head(view, revision)

    return request_deployment(services, name, head, trigger, wanted=wanted, rebuild=rebuild,
                              force=force)


def _encode(queued: Queued) -> str:
    return json.dumps(asdict(queued))


def _decode(text: str) -> Queued:
    fields = json.loads(text)
    status = fields.pop("status")
    return Queued(**fields, status=DeploymentStatus(status) if status else None)
