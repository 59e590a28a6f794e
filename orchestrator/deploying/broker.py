"""The transport Celery reaches Redis with: kombu's Redis transport, with one repair.

When Redis goes away while a worker holds an unacknowledged task (one running, or one
waiting for its countdown) with a BRPOP in flight, Celery first `collect()`s the broken
connection: closing the channel fails part-way on the dead connection (the BRPOP, the
auto-deleted queue of Celery's remote control), and `collect()` then clears the transport's
`client`. Celery then `close()`s the connection, which closes
the channel again; this time its QoS tries to put the unacknowledged task back, which needs
a new connection pool built from that `client`: kombu 5.x raises AttributeError ("'NoneType'
object has no attribute 'hostname'" in `Channel._connparams`). That is no connection error,
so Celery's `ignore_errors` lets it through, calls it unrecoverable and the worker exits
(code 0), stranding what it held. Here that moment raises a connection error instead, as a
channel whose Redis is away raises anyway: the close goes on, the worker reconnects, and the
task left in Redis's unacked set comes back after the visibility timeout.

And Redis refusing the password is the config's error, raised at once, not a connection
error to retry.
"""
from __future__ import annotations

import redis
from kombu.transport import redis as kombu_redis

from orchestrator.runtime.embedded_redis import password_refused

TRANSPORT = "orchestrator.deploying.broker:Transport"      # Celery's broker_transport


class Channel(kombu_redis.Channel):
    def __init__(self, *args, **kwargs) -> None:
        # kombu counts a refused password as a connection error and retries it (a worker,
        # 100 times over about 45 minutes); no retry can fix it, so it is the config's error
        try:
            super().__init__(*args, **kwargs)
        except redis.AuthenticationError:
            raise password_refused(_described(self.connection.client)) from None

    def _connparams(self, asynchronous: bool = False) -> dict:
        if self.connection is None or self.connection.client is None:
            raise redis.ConnectionError("the broker connection was closed")
        return super()._connparams(asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel


def _described(conninfo) -> str:
    """The broker's URL as configured, without credentials (kombu's own names the transport
    class where the scheme was)."""
    db = (conninfo.virtual_host or "").strip("/")
    return f"redis://{conninfo.hostname}:{conninfo.port or 6379}" + (f"/{db}" if db else "")
