"""Which apps moved since a feed id, in one round trip: every append writes the app's stream
and the feed in one script, so the feed entries after an id name every app whose view may
have changed since. The feed is a window (trimmed as written): when it no longer holds the
id, or more entries followed it than are worth naming, nobody can tell which apps moved and
the answer says so (None) — read them all."""
from __future__ import annotations

from dataclasses import dataclass

from orchestrator.core import replies

LIMIT = 1000        # entries after the id at most: past that, reading every app costs less

# The window holds all that followed ARGV[1] only while it still holds an entry at or before it;
# the last entry read must be the feed's last (a feed recreated since has other ids).
SCRIPT = """
-- KEYS[1]: the feed; ARGV: the id asked, the most entries to name
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if not last[1] then return {'0-0', {}} end
local last_id = last[1][1]
if last_id == ARGV[1] then return {last_id, {}} end
if not redis.call('XRANGE', KEYS[1], '-', ARGV[1], 'COUNT', 1)[1] then return {last_id, false} end
local limit = tonumber(ARGV[2])
local since = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', limit + 1)
if #since == 0 or #since > limit or since[#since][1] ~= last_id then return {last_id, false} end
local apps = {}
for i, entry in ipairs(since) do apps[i] = entry[2][2] end
return {last_id, apps}
"""


@dataclass(frozen=True)
class FeedMoves:
    last_id: str                    # the feed's last entry now ("0-0": none)
    apps: frozenset[str] | None     # the apps appended to after the id asked; None: unknown


def decoded(reply: list) -> FeedMoves:
    """SCRIPT's reply."""
    last_id, apps = reply
    return FeedMoves(replies.text(last_id), None if apps is None else frozenset(map(replies.text, apps)))
