"""How views and events are shown to people (Rich) and to programs (JSON)."""
from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from rich.console import Group
from rich.table import Column, Table
from rich.text import Text

from orchestrator.core.event_log import RecordedEvent
from orchestrator.core.projections import AppView, DeploymentView
from orchestrator.core.statuses import DeploymentStatus
from orchestrator.observe.durations import QUEUE, TABLE, duration, took
from orchestrator.observe.fleet_table import drift_text
from orchestrator.observe.host_states import host_lines

# One colour per kind of status; the switched ones (activating, verifying) apart from the
# rest of what runs: the target shows them already, unconfirmed.
STATUS_STYLES = {DeploymentStatus.SUCCESS: "green", DeploymentStatus.FAILED: "bold red",
                 DeploymentStatus.PENDING: "yellow", DeploymentStatus.BUILDING: "yellow",
                 DeploymentStatus.DEPLOYING: "yellow", DeploymentStatus.ACTIVATING: "bold cyan",
                 DeploymentStatus.VERIFYING: "bold cyan", DeploymentStatus.SKIPPED: "dim",
                 DeploymentStatus.SUPERSEDED: "dim"}


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def deployment_json(view: AppView, d: DeploymentView) -> dict:
    return {"id": d.id, "app": view.name, "status": d.status, "revision": d.revision,
            "snapshot": d.snapshot, "active": d.id == view.active_deployment,
            "trigger": d.trigger, "message": d.message, "attempts": d.attempts,
            "received_at": iso(d.received_at), "started_at": iso(d.started_at),
            "ended_at": iso(d.ended_at), "author": d.author, "author_email": d.author_email,
            "deployer": d.deployer, "commit_message": d.commit_message, "change": change_text(d),
            "hosts": dict(sorted((d.hosts or {}).items()))}


def change_text(d: DeploymentView) -> str:
    """Who changed what, in one short line: the commit's (or zip's) message's first line and
    its author (or the deploying tool); "" when nothing said."""
    lines = (d.commit_message or "").strip().splitlines()
    subject = lines[0][:72] if lines else ""
    who = d.author or d.deployer or ""
    return f"{subject} ({who})" if subject and who else subject or who


def drift_json(view: AppView) -> dict | None:
    """The drift the last check recorded and has not seen repaired; None: the target shows
    the active release (as of the last check)."""
    d = view.drift
    return None if d is None else {"kind": d.kind, "detail": d.detail, "repair": d.repair,
                                   "deployment_id": d.deployment_id, "since": iso(d.since),
                                   "text": drift_text(view)}


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(DeploymentStatus(status), ""))


def deployments_table(view: AppView) -> Table:
    """A `hosts` column (each host's state: switched, failed: why...) for an app with hosts."""
    hosts = any(d.hosts for d in view.deployments.values())
    table = Table(_id("id", ID_WIDTH + len(" *")), _text("status"), _id("revision", REVISION_WIDTH),
                  _text("trigger"), _text("change"), _text("received"), _text("took"),
                  _text("message"), *([_text("hosts")] if hosts else []), title=f"deployments of {view.name}")
    for d in view.history():
        mark = " *" if d.id == view.active_deployment else ""
        table.add_row(d.id + mark, status_text(d.status), d.revision[:12], d.trigger, change_text(d),
                      _local(d.received_at), took(d.started_at, d.ended_at, TABLE), d.message,
                      *(["\n".join(host_lines(d.hosts))] if hosts else []))
    return table


def event_line(r: RecordedEvent) -> str:
    e = r.event
    return f"{_local(e.at)}  {e.app:<16} #{r.version:<5} {e.type:<20} {event_fields(vars(e))}"


def event_fields(fields: Mapping[str, object], blank: tuple = (None, "")) -> str:
    """An event's fields besides app and time, `key=value` on one line, those in `blank`
    left out; ids and hashes shortened."""
    return " ".join(f"{k}={_short(v)}" for k, v in fields.items()
                    if k not in ("app", "at") and v not in blank)


def event_json(r: RecordedEvent) -> str:
    return json.dumps({"version": r.version, "id": r.id, "type": r.event.type,
                       **vars(r.event), "at": iso(r.event.at)})


def _short(value) -> str:
    text = str(value)
    return text[:12] if len(text) == 40 or len(text) == 64 else text


def _local(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else ""


def connection_details(config, app: str, user: str) -> str:
    """What `sluice credentials show` prints: the user and each way in."""
    api, ftp = config.api, config.ftp
    lines = [f"app:        {app}", f"user:       {user}",
             f"git:        http://{user}@{api.host}:{api.port}/git/{app}.git"]
    if ftp.listen:
        host = ftp.public_host or ftp.listen.rpartition(":")[0]
        port = ftp.listen.rpartition(":")[2]
        lines += [f"ftp:        ftp://{host}:{port}  user {app}\\{user}"]
        if ftp.certificate:
            lines += [f"ftps:       explicit TLS (AUTH TLS) on {host}:{port}"
                      + (", required" if ftp.require_tls else "")]
    else:
        lines += ["ftp:        off (set ftp.listen)"]
    mode = "read-only: continuous deployment is on" if config.apps[app].source.type != "manual" \
        else "not on continuous deployment: `sluice import` deploys files"
    return "\n".join(lines + [f"files:      {mode}"])


def queue_tables(report: dict) -> Group:
    """What `sluice queue` shows (report: queue_view.inspect_queue)."""
    hosts = any(q.get("host") for q in report["queues"])
    queues = _table("queues", "queue", *(["host"] if hosts else []), "waiting", "oldest waiting")
    for q in report["queues"]:
        queues.add_row(q["name"], *([q["host"] or ""] if hosts else []), str(q["waiting"]),
                       duration(q["oldest_age"], QUEUE))
    running = _table("in flight", "app", _id("deployment"), "status", "worker", "running for")
    for t in report["in_flight"]:
        running.add_row(t["app"], t["deployment_id"], status_text(t["status"]), t["worker"] or "?",
                        duration(t["running_for"], QUEUE))
    retries = _table("retries scheduled", "app", _id("deployment"), "attempt", "due")
    for r in report["retries"]:
        due = f"in {duration(r['due_in'], QUEUE)} ({_local_iso(r['due_at'])})" if r["due_at"] else "?"
        retries.add_row(r["app"], r["deployment_id"], f"{r['attempt']} of {r['of']}", due)
    polls = _table("polls", "app", "next head check")
    for p in report["polls"]["overdue"]:
        polls.add_row(p["app"], f"overdue by {duration(p['late_by'], QUEUE)} (is a poller running?)",
                      style="red")
    for p in report["polls"]["due_next_minute"]:
        polls.add_row(p["app"], f"due in {duration(p['due_in'], QUEUE)}")
    tables = [t if t.row_count else f"{t.title}: none" for t in (queues, running, retries, polls)]
    return Group(*tables, *_notification_tables(report["notifications"]))


def _notification_tables(notifications: dict) -> list:
    failing = _table("notifications failing", "app", "channel", "event", "tries", "next try",
                     _text("last error"))
    for f in notifications["failing"]:
        due = f"in {duration(f['next_in'], QUEUE)} ({_local_iso(f['next_at'])})" if f["next_at"] else "?"
        failing.add_row(f["app"], f["channel"], f["event"], str(f["attempts"]), due, f["error"],
                        style="red")
    count = f"notifications: {notifications['pending']} pending (taken by a notifier, not yet " \
            f"delivered), {len(notifications['failing'])} failing"
    return [count, failing] if failing.row_count else [count]


def _table(title: str, *columns: str | Column) -> Table:
    return Table(*columns, title=title, title_justify="left")


# Ids and revisions are copied into commands (`sluice rollback --to`, `sluice log`), so their
# columns never wrap, fold or shorten, however narrow the terminal (a pipe is 80 wide): the
# other columns wrap instead, folding only words longer than they are wide.
ID_WIDTH = 22           # a deployment id: 20261201-235118-a1b2c3
REVISION_WIDTH = 12     # tables show a revision's first 12 characters


def _id(header: str, width: int = ID_WIDTH) -> Column:
    return Column(header, no_wrap=True, min_width=width)


def _text(header: str) -> Column:
    return Column(header, overflow="fold")


def _local_iso(stamp: str) -> str:
    return _local(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
