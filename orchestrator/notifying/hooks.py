"""The requests of the channels that post JSON to a URL: `webhook` (Sluice's own JSON, signed
with HMAC-SHA256 over the body when a secret is set), `kudu` (Kudu's PostDeployment hook:
the deployment as Kudu's DeployResult, so receivers written for Kudu keep working) and
`slack` (an incoming-webhook message: `text`, which Teams and Mattermost take too).

Every request says which delivery it is (`X-Sluice-Delivery`: the same on every try of it,
so a receiver can drop a repeat) and which event (`X-Sluice-Event`)."""
from __future__ import annotations

import hashlib
import hmac
import json

from orchestrator.config.notify import KuduChannel, SlackChannel, WebhookChannel
from orchestrator.core.projections import AppView
from orchestrator.notifying.delivery import Request
from orchestrator.notifying.messages import Notification
from orchestrator.observe.kudu_json import deployment_json

USER_AGENT = "Sluice-Notifier"


def headers(note: Notification, delivery: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "User-Agent": USER_AGENT,
            "X-Sluice-Delivery": delivery, "X-Sluice-Event": note.type}


def webhook(channel: WebhookChannel, note: Notification, delivery: str) -> Request:
    # the body names the delivery as its X-Sluice-Delivery does: one id per channel and event
    body = json.dumps({**note.to_json(), "delivery": delivery}, sort_keys=True).encode()
    extra = dict(channel.headers)
    if channel.secret:
        extra["X-Sluice-Signature-256"] = "sha256=" + hmac.new(
            channel.secret.encode(), body, hashlib.sha256).hexdigest()
    return Request("POST", channel.url, body, {**headers(note, delivery), **extra})


def kudu(channel: KuduChannel, note: Notification, delivery: str, view: AppView,
         kudu_root: str) -> Request | None:
    if note.deployment is None:
        return None
    body = json.dumps(deployment_json(view, note.deployment, kudu_root)).encode()
    return Request("POST", channel.url, body, headers(note, delivery))


def slack(channel: SlackChannel, note: Notification, delivery: str) -> Request:
    text = note.text + (f" <{note.log_url}|log>" if note.log_url else "")
    return Request("POST", channel.url, json.dumps({"text": text}).encode(), headers(note, delivery))
