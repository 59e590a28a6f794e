"""The deploy messages the broker has, by deployment: waiting in the deploy queue's lists, or
held by a worker. Read, never changed.

kombu's Redis transport keeps a queue in one list per priority step; a worker BRPOPs a
message, then records it in the `unacked` hash (the time it took it in `unacked_index`)
until it acknowledges it; a message with a countdown is held there until its ETA. Between
the BRPOP and that record the message is in the worker alone: a worker killed then loses it
for good, and its deployment would wait for ever (the reaper compares what is here with the
deployments waiting to run). Each message's envelope is JSON; its body, base64 JSON
`[args, kwargs, embed]`, holds the task's arguments `[app, deployment_id, attempt]`.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime

import redis

from orchestrator.core import replies
from orchestrator.deploying.task_queue import DEPLOY_QUEUE, DEPLOY_TASK, priority_lists

UNACKED, UNACKED_INDEX = "unacked", "unacked_index"      # kombu's default key names


@dataclass(frozen=True)
class DeployMessage:
    deployment_id: str
    held_since: float | None = None     # None: waiting in the queue for a worker
    eta: float | None = None            # a countdown's end (unix time)

    def alive(self, now: float, grace: float) -> bool:
        """Whether a worker can still be expected to run it: it waits in the queue, or it
        was handed out (or came due) less than `grace` seconds ago."""
        return self.held_since is None or now <= max(self.held_since, self.eta or 0.0) + grace


def deploy_messages(client: redis.Redis) -> list[DeployMessage]:
    lists = priority_lists(DEPLOY_QUEUE)
    with client.pipeline(transaction=False) as pipe:
        for key in lists:
            pipe.lrange(key, 0, -1)
        pipe.hgetall(UNACKED)
        pipe.zrange(UNACKED_INDEX, 0, -1, withscores=True)
        *waiting, held, index = pipe.execute()
    found = [m for raws in waiting for m in (_message(_envelope(raw)) for raw in raws) if m]
    handed_out = {replies.text(tag): at for tag, at in replies.scored(index)}
    for tag, raw in held.items():
        message = _message(_envelope(raw, held=True), handed_out.get(replies.text(tag), 0.0))
        if message:
            found.append(message)
    return found


def _envelope(raw: bytes, held: bool = False) -> dict | None:
    try:
        data = json.loads(raw)
        return data[0] if held else data        # held: [envelope, exchange, routing key]
    except (ValueError, IndexError, KeyError, TypeError):
        return None


def _message(envelope: dict | None, held_since: float | None = None) -> DeployMessage | None:
    """The deploy task a message carries; None for other tasks or what cannot be read."""
    try:
        headers = envelope["headers"]           # type: ignore[index]
        if headers.get("task") != DEPLOY_TASK:
            return None
        args = json.loads(base64.b64decode(envelope["body"]))[0]   # type: ignore[index]
        eta = headers.get("eta")
        return DeployMessage(str(args[1]), held_since,
                             datetime.fromisoformat(eta).timestamp() if eta else None)
    except (TypeError, KeyError, IndexError, ValueError):
        return None
