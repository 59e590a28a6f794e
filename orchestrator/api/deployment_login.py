"""HTTP Basic logins with an app's deployment credentials: the built-in Git repositories
(/git/{app}.git) and the Kudu API (/scm/{app}/...) take them the same way.

A wrong user, a wrong password, an app without credentials and an unknown app all get the
same 401 after the same hash work; an address that keeps failing waits longer and longer for
its answers, and one trying more than its turns or hash slots allow gets 429 with Retry-After
(access/login_throttle.py). The user may be given as `APP\\USER`, as Azure shows it.
"""
from __future__ import annotations

import asyncio

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

from orchestrator.access.credentials import Verifier
from orchestrator.access.login_throttle import HASHES_IN_ALL, TooManyLogins
from orchestrator.api.threads import in_own_threads
from orchestrator.core import basic_auth

REFUSED = 'Basic realm="sluice"'


async def logged_in(request: Request, app: str) -> str | Response:
    """The user the request's credentials open `app` for, or the 401 / 429 to answer."""
    try:
        user = await authenticated_user(request, app)
    except TooManyLogins as busy:
        return PlainTextResponse(f"{busy}\n", 429, headers={"Retry-After": str(busy.retry_after)})
    if user is None:
        return PlainTextResponse("authentication required\n", 401,
                                 headers={"WWW-Authenticate": REFUSED})
    return user


async def authenticated_user(request: Request, app: str) -> str | None:
    given = basic_auth.credentials(request.headers.get("authorization"))
    if given is None:       # git asks without credentials first: not a failed attempt
        return None
    user, password = given
    if user.startswith(f"{app}\\"):
        user = user[len(app) + 1:]
    verifier, address = _verifier(request.app), client_address(request)
    # Counted as a failure and held before the check: a guesser cannot learn an answer early
    # by hanging up, nor get further by guessing in parallel.
    await asyncio.sleep(await _login_work(request.app, verifier.throttle.admit, address, app))
    return user if await _login_work(request.app, verifier.login, address, app, user, password) else None


async def _login_work(api: FastAPI, work, *args):
    return await in_own_threads(api, "logins", HASHES_IN_ALL, work, *args)


def _verifier(api: FastAPI) -> Verifier:
    """One per API, so a clone's several requests share its cache of recent successes."""
    if not hasattr(api.state, "git_verifier"):
        api.state.git_verifier = Verifier(api.state.services)
    return api.state.git_verifier


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
