"""The API process's one reader of `sluice:feed` (api/feed_hub.py), against a real Redis:
followers joining anywhere get each entry once and in order; one that falls too far behind
is let go and resumes from its last id; the reader and its connection go with the last
follower."""
from __future__ import annotations

import asyncio

import pytest

from orchestrator.api import feed_hub
from orchestrator.api.feed_hub import FeedHub, FollowEnded
from orchestrator.core import keys

WAIT = 5.0


def append(client, count: int, app: str = "hello") -> list[str]:
    return [client.xadd(keys.FEED, {"app": app, "type": "Noted", "data": "{}"}).decode() for _ in range(count)]


async def take(follow, count: int) -> list[str]:
    ids: list[str] = []
    while len(ids) < count:
        batch = await asyncio.wait_for(follow.__anext__(), WAIT)
        assert batch, "a wait ended with nothing, though entries were there"
        ids += [entry_id for entry_id, _ in batch]
    return ids


def test_followers_joining_before_and_after_entries_get_each_once_in_order(redis_url, clean_redis):
    async def run() -> tuple[list[str], list[str], list[str]]:
        hub = FeedHub(redis_url)
        early = append(clean_redis, 3)
        from_start = hub.follow("0-0", lambda fields: True, WAIT)
        whole = await take(from_start, 3)
        later = append(clean_redis, 4)
        from_middle = hub.follow(early[1], lambda fields: True, WAIT)
        middle = await take(from_middle, 5)
        whole += await take(from_start, 4)
        await from_start.aclose()
        await from_middle.aclose()
        return early + later, whole, middle

    every, whole, middle = asyncio.run(run())

    assert whole == every
    assert middle == every[2:]


def test_a_follower_too_far_behind_is_let_go_and_resumes_from_its_last_id(redis_url, clean_redis, monkeypatch):
    monkeypatch.setattr(feed_hub, "QUEUE_SIZE", 3)

    async def run() -> tuple[list[str], list[str], list[str]]:
        hub = FeedHub(redis_url)
        start = append(clean_redis, 1)[0]
        slow = hub.follow(start, lambda fields: True, WAIT)
        reading = asyncio.ensure_future(slow.__anext__())       # joined, waiting on its queue
        await asyncio.sleep(0)
        while not hub.followers:
            await asyncio.sleep(0.01)
        sent = append(clean_redis, 1)
        got = [entry_id for entry_id, _ in await reading]
        sent += append(clean_redis, 10)
        while hub.position != sent[-1]:         # the reader has offered them all
            await asyncio.sleep(0.01)
        with pytest.raises(FollowEnded, match="too far behind"):
            await take(slow, 10)
        resumed = hub.follow(got[-1], lambda fields: True, WAIT)
        got += await take(resumed, 10)
        await resumed.aclose()
        return sent, got, [f.ended or "" for f in hub.followers]

    sent, got, left = asyncio.run(run())

    assert got == sent and left == []


def test_the_reader_and_its_connection_go_with_the_last_follower(redis_url, clean_redis):
    def readers() -> int:
        return sum(c.get("name") == feed_hub.READER_NAME for c in clean_redis.client_list())

    async def run() -> tuple[int, int]:
        hub = FeedHub(redis_url)
        one, two = (hub.follow("0-0", lambda fields: True, 0.2) for _ in range(2))
        await asyncio.wait_for(one.__anext__(), WAIT)
        await asyncio.wait_for(two.__anext__(), WAIT)
        both = await asyncio.to_thread(readers)
        await one.aclose()
        await two.aclose()
        while hub._reader is not None or await asyncio.to_thread(readers):
            await asyncio.sleep(0.05)
        return both, await asyncio.to_thread(readers)

    following, left = asyncio.run(asyncio.wait_for(run(), WAIT))

    assert (following, left) == (1, 0)
