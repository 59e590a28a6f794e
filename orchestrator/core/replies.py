"""Redis replies as Sluice's clients receive them.

redis-py types each reply for every protocol (RESP2 and RESP3) and both `decode_responses`
settings at once: a stream read is `list[tuple[bytes | str | None, dict | None]] | None`, an
XREAD reply one of three shapes. Sluice's clients (`Redis.from_url` with its defaults) speak
RESP2 and return bytes, so each reply has one shape; these casts state it, once, where the
checker can see it. The integration tests read the same replies from a real redis-server.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import cast

StreamEntry = tuple[bytes, dict[bytes, bytes]]       # (entry id, fields)


def entries(reply: object) -> list[StreamEntry]:
    """XRANGE or XREVRANGE: the entries, [] for an empty or missing stream."""
    return cast(list[StreamEntry], reply)


def read_entries(reply: object) -> list[StreamEntry]:
    """XREAD of one stream: its new entries, [] when the wait ended with none."""
    batches = cast(list[tuple[bytes, list[StreamEntry]]] | None, reply)
    return batches[0][1] if batches else []


def scored(reply: object) -> list[tuple[bytes, float]]:
    """ZRANGE or ZRANGEBYSCORE WITHSCORES: (member, score) pairs."""
    return cast(list[tuple[bytes, float]], reply)


def members(reply: object) -> list[bytes]:
    """ZRANGE without scores."""
    return cast(list[bytes], reply)


def value(reply: object) -> bytes | None:
    """GET or HGET: the value, None when there is none."""
    return cast(bytes | None, reply)


def values(reply: object) -> list[bytes | None]:
    """HMGET: the values asked for, in order, None for each missing one."""
    return cast(list[bytes | None], reply)


def hash_fields(reply: object) -> dict[bytes, bytes]:
    """HGETALL: every field of the hash, {} for a missing key."""
    return cast(dict[bytes, bytes], reply)


def text(value: bytes | str) -> str:
    """A reply's bytes as str (str passes as it is: some callers hold either)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def text_fields(fields: Mapping[bytes, bytes] | Mapping[str, str]) -> dict[str, str]:
    """A stream entry's or a hash's fields, names and values as str."""
    return {text(k): text(v) for k, v in fields.items()}
