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
"""
from __future__ import annotations

import redis
from kombu.transport import redis as kombu_redis

TRANSPORT = "orchestrator.deploying.broker:Transport"      # Celery's broker_transport


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict:
        if self.connection is None or self.connection.client is None:
            raise redis.ConnectionError("the broker connection was closed")
        return super()._connparams(asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel
