"""Many apps' streams read at once (fleet views): one script call per GROUP apps, all in one
round trip, each giving the stream's first entry (id and version: whether the archive holds
some of what was asked) and up to COUNT entries after the id asked. A command per stream would
cost the client more to pack and parse than Redis takes to answer."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis

from orchestrator.core import replies

COUNT = 100         # entries per stream at most: a stream with more new ones is read alone
GROUP = 250         # streams per script call: Redis answers nobody else while one runs

_READ = """
local count, out = tonumber(ARGV[#ARGV]), {}
for i, key in ipairs(KEYS) do
  local head = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)
  local start = '-'
  if ARGV[i] ~= '' then start = '(' .. ARGV[i] end
  local first = {}
  if head[1] then first = {head[1][1], head[1][2][2]} end
  out[i] = {first, redis.call('XRANGE', key, start, '+', 'COUNT', count)}
end
return out
"""


@dataclass(frozen=True)
class StreamRead:
    head: tuple[str, int] | None                # the first entry's id and version; None: empty
    entries: list[tuple[str, dict[bytes, bytes]]]   # after the id asked, oldest first


def read_streams(client: redis.Redis, streams: Sequence[tuple[str, str | None]],
                 count: int = COUNT) -> list[StreamRead]:
    """For each (stream key, id to read after or None: from the start), in one round trip."""
    script = client.register_script(_READ)
    with client.pipeline(transaction=False) as pipe:
        for at in range(0, len(streams), GROUP):
            group = streams[at:at + GROUP]
            script(keys=[k for k, _ in group], args=[a or "" for _, a in group] + [count], client=pipe)
        answers = [a for reply in pipe.execute() for a in reply]
    return [StreamRead((replies.text(h[0]), int(h[1])) if h else None, [_entry(x) for x in e])
            for h, e in answers]


def _entry(raw: list) -> tuple[str, dict[bytes, bytes]]:
    entry_id, flat = raw        # a script's reply: the fields as a flat list, decoded once, when read
    return replies.text(entry_id), dict(zip(flat[::2], flat[1::2]))
