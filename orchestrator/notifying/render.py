"""Which request each kind of channel makes of a notification."""
from __future__ import annotations

from orchestrator.config.notify import (
    Channel,
    KuduChannel,
    SlackChannel,
    WebhookChannel,
)
from orchestrator.config.settings import SluiceConfig
from orchestrator.core.projections import AppView
from orchestrator.notifying import commit_statuses, hooks
from orchestrator.notifying.delivery import Request
from orchestrator.notifying.messages import Notification


def request_for(channel: Channel, note: Notification, delivery: str, view: AppView,
                config: SluiceConfig) -> Request | None:
    """The request telling `channel` of `note`; None when it has nothing to say of it."""
    if isinstance(channel, WebhookChannel):
        return hooks.webhook(channel, note, delivery)
    if isinstance(channel, KuduChannel):
        root = f"{(config.public_url or '').rstrip('/')}/scm/{note.app}"
        return hooks.kudu(channel, note, delivery, view, root)
    if isinstance(channel, SlackChannel):
        return hooks.slack(channel, note, delivery)
    return commit_statuses.status_request(channel, note, delivery, view, config)
