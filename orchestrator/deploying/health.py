"""`health`: proving a release healthy over HTTP after the switch (issue 15). The app's probe
(a GET of its `url`, `{placeholders}` filled) runs every `interval` until `healthy_after`
answers in a row have an expected status and, if asked, hold `body_contains` (e.g.
`{revision}`: the new code is the one answering); past the `deadline`, counted from the
switch, the release is not healthy. Then it goes on for `stable_for`, where one failing
probe is enough. Each probe is one request, its own `timeout`, no retries, no redirects
followed. A failure is HealthCheckFailed with a one-line reason; the runner then keeps the
release or rolls back (`on_failure`).
"""
from __future__ import annotations

import statistics
from collections.abc import Callable, Container, Iterator, Mapping
from dataclasses import dataclass

import httpx

from orchestrator.config.steps import HealthConfig
from orchestrator.core.clock import Clock
from orchestrator.core.errors import HealthCheckFailed
from orchestrator.core.placeholders import fill
from orchestrator.core.urls import sanitize_url

BODY_LIMIT = 1 << 20        # bytes of an answer searched for body_contains: a health page is small


@dataclass(frozen=True)
class Probe:
    """One probe's outcome; `seconds` is its own round trip."""
    ok: bool
    status: int | None
    seconds: float
    detail: str             # "answered 200", "body lacks 'abc123'", "timed out after 5 s", ...


@dataclass(frozen=True)
class HealthReport:
    probes: int
    failures: int
    healthy_after_s: float  # from the start to the end of the probe that made it healthy
    seconds: float          # from the start to the end, stable_for included
    latency_ms: dict[str, float]    # p50 and max of the probes' round trips


@dataclass(frozen=True)
class _Request:
    """The probe as sent, its placeholders filled."""
    url: str
    headers: dict[str, str]
    expect: Container[int]
    body: str | None
    timeout: float

    @classmethod
    def of(cls, spec: HealthConfig, values: Mapping[str, str]) -> _Request:
        return cls(fill(spec.url, values), {k: fill(v, values) for k, v in spec.headers.items()},
                   spec.expect or range(200, 400),
                   None if spec.body_contains is None else fill(spec.body_contains, values), spec.timeout)

    def __str__(self) -> str:
        return f"GET {sanitize_url(self.url)}"


def verify_health(spec: HealthConfig, values: Mapping[str, str], *, clock: Clock, client: httpx.Client,
                  on_probe: Callable[[Probe], None] = lambda p: None,
                  started: float | None = None) -> HealthReport:
    """Probe until healthy, then for `stable_for`; HealthCheckFailed if it is not. `values`
    fill the placeholders (before_switch.variables); `started`, a clock.monotonic() time,
    is when the deadline began (a verification resumed after a crash keeps its own)."""
    start = clock.monotonic() if started is None else started
    prober = _Prober(_Request.of(spec, values), client, clock, on_probe)
    healthy_at, in_a_row = _become_healthy(spec, prober, start)
    _stay_healthy(spec, prober, healthy_at, in_a_row)
    return HealthReport(prober.probes, prober.failures, healthy_at - start, clock.monotonic() - start,
                        prober.latency_ms())


class _Prober:
    """Sends the probe and keeps count."""

    def __init__(self, request: _Request, client: httpx.Client, clock: Clock,
                 on_probe: Callable[[Probe], None]):
        self.request, self.client, self.clock, self.on_probe = request, client, clock, on_probe
        self.probes = self.failures = 0
        self.latencies: list[float] = []

    def __call__(self) -> Probe:
        result = _probe(self.request, self.client, self.clock)
        self.probes += 1
        self.failures += not result.ok
        self.latencies.append(result.seconds)
        self.on_probe(result)
        return result

    def latency_ms(self) -> dict[str, float]:
        return {"p50": round(statistics.median(self.latencies) * 1000, 1),
                "max": round(max(self.latencies) * 1000, 1)}


def _become_healthy(spec: HealthConfig, prober: _Prober, start: float) -> tuple[float, int]:
    """When it became healthy, and after how many good probes in a row."""
    now = prober.clock.monotonic()
    # Past the deadline already (a resumed verification): one probe still says how it is.
    in_a_row, last = 0, None
    for _ in _schedule(prober.clock, now, spec.interval, until=max(now, start + spec.deadline)):
        last = prober()
        in_a_row = in_a_row + 1 if last.ok else 0
        if in_a_row >= spec.healthy_after:
            return prober.clock.monotonic(), in_a_row
    assert last is not None
    why = last.detail if not last.ok else (
        f"{last.detail} but only {in_a_row} time{'s' * (in_a_row != 1)} in a row of the {spec.healthy_after} needed")
    raise HealthCheckFailed(f"health: {prober.request} {why} ({prober.failures} of {prober.probes} probes "
                            f"failed; not healthy within the {spec.deadline:g} s deadline)")


def _stay_healthy(spec: HealthConfig, prober: _Prober, healthy_at: float, in_a_row: int) -> None:
    for at in _schedule(prober.clock, healthy_at + spec.interval, spec.interval,
                        until=healthy_at + spec.stable_for):
        result = prober()
        if not result.ok:
            raise HealthCheckFailed(f"health: {prober.request} {result.detail} at {round(at - healthy_at, 1):g} s "
                                    f"of stable_for {spec.stable_for:g} s (after {in_a_row} healthy probes)")
        in_a_row += 1


def _schedule(clock: Clock, first: float, interval: float, until: float) -> Iterator[float]:
    """Probe start times: `first`, then `interval` after each start (at once when a slow
    probe took longer), none after `until`."""
    at = first
    while at <= until:
        if at > clock.monotonic():
            clock.sleep(at - clock.monotonic())
        now = clock.monotonic()
        yield now
        at = now + interval


def _probe(request: _Request, client: httpx.Client, clock: Clock) -> Probe:
    began = clock.monotonic()
    try:
        status, body = _get(request, client)
    except httpx.TimeoutException:
        return Probe(False, None, clock.monotonic() - began, f"timed out after {request.timeout:g} s")
    except httpx.HTTPError as exc:
        return Probe(False, None, clock.monotonic() - began, f"{type(exc).__name__}: {exc}".rstrip(": "))
    seconds = clock.monotonic() - began
    if status not in request.expect:
        return Probe(False, status, seconds, f"answered {status}")
    if request.body is not None and request.body.encode() not in body:
        return Probe(False, status, seconds, f"body lacks {request.body!r}")
    return Probe(True, status, seconds, f"answered {status}")


def _get(request: _Request, client: httpx.Client) -> tuple[int, bytes]:
    with client.stream("GET", request.url, headers=request.headers, timeout=request.timeout,
                       follow_redirects=False) as answer:
        body = b""
        if request.body is not None:
            for chunk in answer.iter_bytes():
                body += chunk
                if len(body) >= BODY_LIMIT:
                    break
        return answer.status_code, body
