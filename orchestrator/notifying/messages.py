"""What a notification says: one event of an app, with the deployment it concerns as the
app's view knows it then, in words every channel renders its own way."""
from __future__ import annotations

from dataclasses import dataclass

from orchestrator.config.notify import STARTED, STATUS_TYPES
from orchestrator.core.events import Event
from orchestrator.core.projections import AppView, DeploymentView
from orchestrator.observe.formatting import iso

# The state a commit status shows for each event (others send none)
STATES = {STARTED: "pending", "DeploymentSucceeded": "success", "DeploymentSkipped": "success",
          "DeploymentFailed": "failure", "DeploymentRolledBack": "failure",
          "DeploymentSuperseded": "error"}
SUMMARIES = {"DeploymentQueued": "queued", STARTED: "started", "DeploymentSucceeded": "succeeded",
             "DeploymentFailed": "failed", "DeploymentSkipped": "skipped (already live)",
             "DeploymentSuperseded": "superseded", "DeploymentRolledBack": "rolled back",
             "RevisionRejected": "rejected its revision", "DriftDetected": "drift detected",
             "DriftRepaired": "drift repaired"}


@dataclass(frozen=True)
class Notification:
    delivery: str               # the feed entry's id: the idempotency key of every delivery of it
    app: str
    event: Event
    deployment: DeploymentView | None
    log_url: str | None         # the deployment's log, on the dashboard's API

    @property
    def type(self) -> str:
        return str(self.event.type)

    @property
    def reason(self) -> str:
        return str(getattr(self.event, "reason", "") or (self.deployment.message if self.deployment else ""))

    @property
    def text(self) -> str:
        """One line for people: `hello: deployment 20261202-… of 1a2b3c4d5e6f failed: why`."""
        d = self.deployment
        what = f"deployment {d.id} of {d.revision[:12]}" if d else "app"
        line = f"{self.app}: {what} {SUMMARIES.get(self.type, self.type)}"
        return f"{line}: {self.reason}" if self.type in ("DeploymentFailed", "DeploymentRolledBack",
                                                          "RevisionRejected") and self.reason else line

    def to_json(self) -> dict:
        d = self.deployment
        return {"delivery": self.delivery, "app": self.app, "event": self.type,
                "at": iso(self.event.at), "text": self.text,
                "deployment": None if d is None else {
                    "id": d.id, "status": str(d.status), "revision": d.revision,
                    "trigger": d.trigger, "message": d.message, "author": d.author,
                    "commit_message": d.commit_message, "received_at": iso(d.received_at),
                    "started_at": iso(d.started_at), "ended_at": iso(d.ended_at)},
                "reason": self.reason or None, "log_url": self.log_url}


def notification(delivery: str, app: str, event: Event, view: AppView,
                 public_url: str | None) -> Notification:
    d = view.deployments.get(str(getattr(event, "deployment_id", "") or ""))
    base = (public_url or "").rstrip("/")
    log_url = f"{base}/api/deployments/{d.id}/log?app={app}" if d and base else None
    return Notification(delivery, app, event, d, log_url)


def wanted(channel_type: str, events: list[str], event_type: str) -> bool:
    """Whether a channel is told of this event: those it lists, and for commit statuses the
    pending state when a deployment starts and every end of it (skipped, superseded too): a
    commit marked pending must not stay so."""
    return event_type in events or (channel_type in STATUS_TYPES and event_type in STATES)
