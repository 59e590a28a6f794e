"""Folded views saved to Redis only while their streams still hold what was folded.

A view is read (cached view, then the stream's entries after its last id), folded and saved
back. A stream deleted and begun again meanwhile (an operator removing an app's history, a
test cleaning Redis) must not get the old view saved over it: every later read would start
from the old view's last id and skip the new stream's first events. So the save is one
script that writes each view only if its stream still holds the entry the view ends at.
"""
from __future__ import annotations

from collections.abc import Sequence

import redis

_SAVE = """
for i = 1, #KEYS, 2 do
  local last = ARGV[i]
  if #redis.call('XRANGE', KEYS[i + 1], last, last) == 1 then
    redis.call('SET', KEYS[i], ARGV[i + 1])
  end
end
return 0
"""


def save_views(client: redis.Redis, views: Sequence[tuple[str, str, str, bytes]]) -> None:
    """Each (view key, stream key, the view's last entry id, the view's JSON), in one script
    call: one round trip (EVALSHA; the script is loaded once per server)."""
    if views:
        client.register_script(_SAVE)(
            keys=[k for view_key, stream_key, _, _ in views for k in (view_key, stream_key)],
            args=[a for _, _, last, body in views for a in (last, body)])
