"""/metrics put together from each app's text: the samples of the per-app families as
prometheus_client writes them, kept in Redis per format and app (`sluice:metrics:text:{fmt}:
{app}`) with the stamp of what they show (observe/metrics.py's: the version of the app's stream,
the families' layout, the app's hosts). A scrape reads the streams' versions and the kept texts
(two round trips) and formats again only the apps whose stamp changed since: formatting every
sample of a fleet at each scrape cost more than all the rest."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import redis

from orchestrator.core import keys, replies

SEPARATOR = b"\x00"         # between two families' samples (never in the exposition's text)


def kept(client: redis.Redis, fmt: str, stamps: Mapping[str, bytes]) -> dict[str, list[bytes]]:
    """Each app's samples per family, of the apps whose kept text has the stamp they have now
    (one line, no newline in it)."""
    apps = list(stamps)
    found = {}
    for app, raw in zip(apps, client.mget([keys.metrics_text(fmt, app) for app in apps]) if apps else []):
        stamp, _, text = (replies.value(raw) or b"").partition(b"\n")
        if stamp and stamp == stamps[app]:
            found[app] = text.split(SEPARATOR)
    return found


def save(client: redis.Redis, fmt: str, texts: Mapping[str, tuple[bytes, list[bytes]]]) -> None:
    """Keep each app's samples per family, with the stamp of what they show."""
    if texts:
        client.mset({keys.metrics_text(fmt, app): stamp + b"\n" + SEPARATOR.join(samples)
                     for app, (stamp, samples) in texts.items()})


def split(encoded: bytes) -> tuple[list[bytes], list[bytes]]:
    """An exposition's header lines and its samples, per family (the trailer dropped)."""
    headers: list[bytes] = []
    samples: list[bytes] = []
    for line in encoded.splitlines(keepends=True):
        if line.startswith(b"# HELP "):
            headers.append(line)
            samples.append(b"")
        elif line.startswith((b"# TYPE ", b"# UNIT ")):
            headers[-1] += line
        elif not line.startswith(b"# EOF"):
            samples[-1] += line
    return headers, samples


def joined(headers: list[bytes], apps: Iterable[list[bytes]], rest: bytes) -> bytes:
    """The exposition: each per-app family's header and every app's samples of it, then `rest`
    (the other families, and the trailer)."""
    columns = list(zip(*apps)) or [()] * len(headers)
    return b"".join(header + b"".join(column) for header, column in zip(headers, columns)) + rest
