"""Every Redis key Sluice uses, in one place.

Events (the source of truth):
  sluice:apps                    set of app names that have a stream
  sluice:app:{app}:events        stream of the app's events; entry field `n` is its version
  sluice:feed                    capped stream mirroring every event, for followers (a window)
  older events of an app: files under {data_dir}/archive/<app>/ (core/event_archive.py)

Secrets (not derived from events: back them up with the streams):
  sluice:credentials:{app}       JSON: the app's deployment user and scrypt hash of its password

Caches and coordination (safe to delete; rebuilt or re-derived):
  sluice:proj:app:{app}          JSON of the app's folded projection, with its version
  sluice:poll:due                sorted set: app -> unix time its next head check is due
  sluice:poll:cursor             hash: app -> "{source fingerprint} {head revision} {cursor}"
  sluice:poll:failures           hash: app -> consecutive failed head checks (for backoff)
  sluice:lease:{app}             the app's deployment lease: "{fencing token}:{holder}", with a TTL
  sluice:lease:{app}:fence       counter handing out fencing tokens
  sluice:hook:{provider}:{id}    a webhook delivery already acted on (kept 7 days)
  sluice:progress:{deployment}   hash: done, total downloads of a deployment's snapshot (1 h TTL)
  sluice:scrub                   held (with a TTL of scrub_interval) by the poller that last
                                 ran a round of the store's scrub
  sluice:metrics:store           hash: corrupt blobs found (by what) and blobs scrubbed
  sluice:head:{app}              hash: automatic triggers' tickets and the last head check's
                                 result (core/coalesce.py); `…:running` the check's lock (expires)
  sluice:auth:attempts:{app}:{addr}  hash: failed logins to an app from an address and the
                                 last one's turn (access/login_throttle.py; 15 min TTL)
  sluice:metrics:app:{app}       JSON: per-app metric aggregates and the stream id they reach
  sluice:metrics:text:{fmt}:{app}  the app's samples as /metrics writes them, and its stream's version
  sluice:metrics:polls           hash: head-check counts, duration buckets and errors by source type
  sluice:gc                      held (with a TTL of gc_interval) by the worker that last
                                 collected the store's garbage
  sluice:archiving:{app}         held (with a TTL) by the process archiving and trimming the
                                 app's stream (core/stream_tail.py)
  sluice:drift:due               unix time the next round of drift checks is due (the poller
                                 that moves it ahead runs the round)
  sluice:notify:failing          hash: delivery -> JSON of a notification failing now (app,
                                 channel, event, tries, last error, next try), until it ends
The feed's consumer group `notifier` (NOTIFIER_GROUP: notifying/outbox.py) holds the entries
handed to notifiers and not yet acknowledged (`sluice queue` counts them).
"""

PREFIX = "sluice:"
APPS = PREFIX + "apps"
FEED = PREFIX + "feed"
NOTIFY_FAILING = PREFIX + "notify:failing"
NOTIFIER_GROUP = "notifier"         # the feed's consumer group of notifiers
POLL_DUE = PREFIX + "poll:due"
POLL_CURSOR = PREFIX + "poll:cursor"
POLL_FAILURES = PREFIX + "poll:failures"
GC = PREFIX + "gc"
DRIFT_DUE = PREFIX + "drift:due"


def app_events(app: str) -> str:
    return f"{PREFIX}app:{app}:events"


def archiving(app: str) -> str:
    """Held (with a TTL) by the process archiving and trimming the app's stream."""
    return f"{PREFIX}archiving:{app}"


def app_projection(app: str) -> str:
    return f"{PREFIX}proj:app:{app}"


def progress(deployment_id: str) -> str:
    return f"{PREFIX}progress:{deployment_id}"


METRICS_POLLS = PREFIX + "metrics:polls"
METRICS_STORE = PREFIX + "metrics:store"
SCRUB = PREFIX + "scrub"


def metrics_app(app: str) -> str:
    return f"{PREFIX}metrics:app:{app}"


def metrics_text(fmt: str, app: str) -> str:
    return f"{PREFIX}metrics:text:{fmt}:{app}"


def credentials(app: str) -> str:
    return f"{PREFIX}credentials:{app}"


def login_attempts(address: str, app: str) -> str:
    return f"{PREFIX}auth:attempts:{app}:{address}"


def hook_delivery(provider: str, delivery_id: str) -> str:
    return f"{PREFIX}hook:{provider}:{delivery_id}"


def lease(app: str) -> str:
    return f"{PREFIX}lease:{app}"


def cleaning(app: str) -> str:
    return f"{PREFIX}cleaning:{app}"


def lease_fence(app: str) -> str:
    return f"{PREFIX}lease:{app}:fence"


def head_check(app: str) -> str:
    """Hash: tickets of the automatic triggers waiting for a head check of the app and the
    last check's result (core.coalesce); `…:running` the lock of the check running."""
    return f"{PREFIX}head:{app}"


def host_gc(host: str) -> str:
    """Held for gc_interval after a host's worker collected its own store (issue 19)."""
    return f"{GC}:host:{host}"
