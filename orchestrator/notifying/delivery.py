"""One HTTP request to a receiver, and what its answer means for the delivery: done, try
again (5xx, 429 — after its Retry-After —, timeouts and network errors), or failed for good
(any other 4xx: the receiver's answer says why, and trying again cannot help)."""
from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass, field

import httpx

ANSWER_KEPT = 300           # characters of a receiver's refusal kept in NotificationFailed


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    retry: bool = False
    after: float | None = None          # seconds the receiver asked to wait (Retry-After)
    status: int | None = None
    detail: str = ""


def send(client: httpx.Client, request: Request, timeout: float, now: float | None = None) -> Outcome:
    try:
        answer = client.request(request.method, request.url, content=request.body,
                                headers=request.headers, timeout=timeout)
    except httpx.HTTPError as exc:
        return Outcome(False, retry=True, detail=f"{type(exc).__name__}: {exc}")
    code = answer.status_code
    if code < 300:
        return Outcome(True, status=code)
    detail = f"HTTP {code}: {answer.text[:ANSWER_KEPT]}"
    if code == 429 or code >= 500:
        return Outcome(False, retry=True, status=code, detail=detail,
                       after=retry_after(answer.headers.get("retry-after"), now or time.time()))
    return Outcome(False, status=code, detail=detail)


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)
