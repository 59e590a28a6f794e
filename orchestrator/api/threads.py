"""Blocking work of the API, off its event loop, in a few threads of its own per kind of work:
a burst of one kind (login hashes, webhook deliveries) takes neither the shared threads nor
the GIL and CPU that the API's other requests (/healthz...) need, as dozens of threads
contending with the loop would."""
from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from fastapi import FastAPI

T = TypeVar("T")


async def in_own_threads(api: FastAPI, kind: str, threads: int, work: Callable[..., T], *args: Any) -> T:
    # A limiter belongs to the event loop it was first used on (a waiter woken on a loop that is
    # gone never runs): one per loop, as a test client may drive the app from several.
    loops = getattr(api.state, "thread_limiters", None)
    if loops is None:
        loops = api.state.thread_limiters = weakref.WeakKeyDictionary()
    limiters = loops.setdefault(asyncio.get_running_loop(), {})
    limiter = limiters.setdefault(kind, anyio.CapacityLimiter(threads))
    return await anyio.to_thread.run_sync(work, *args, limiter=limiter)
