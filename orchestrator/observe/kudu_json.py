"""Sluice's deployments in the JSON shapes of Kudu's REST API (Kudu.Contracts' DeployResult
and LogEntry), so that tools written for Kudu read them unchanged.

Kudu's `status` is a number: 0 pending, 1 building, 2 deploying, 3 failed, 4 success. A
Sluice deployment that is activating or verifying the new release is still deploying (2); a
skipped one (its files were live already) succeeded (4); a superseded one never ran, and as
Kudu has no word for that it failed (3), its `status_text` saying why. Times are UTC in ISO
8601 with a `Z`, as Kudu writes them.
"""
from __future__ import annotations

from datetime import UTC, datetime

from orchestrator.core.projections import AppView, DeploymentView
from orchestrator.core.statuses import DeploymentStatus
from orchestrator.observe.log_lines import ERROR, WARNING, LogLine

PENDING, BUILDING, DEPLOYING, FAILED, SUCCESS = range(5)
KUDU_STATUS = {
    DeploymentStatus.PENDING: PENDING, DeploymentStatus.BUILDING: BUILDING,
    DeploymentStatus.DEPLOYING: DEPLOYING, DeploymentStatus.ACTIVATING: DEPLOYING,
    DeploymentStatus.VERIFYING: DEPLOYING, DeploymentStatus.FAILED: FAILED,
    DeploymentStatus.SUPERSEDED: FAILED, DeploymentStatus.SUCCESS: SUCCESS,
    DeploymentStatus.SKIPPED: SUCCESS,
}
# Kudu's deployer names by trigger, where the deployment did not come with one of its own
DEPLOYERS = {"push": "Push-Deployer", "zipdeploy": "ZipDeploy", "import": "Sluice-Import",
             "webhook": "Webhook", "poll": "Poll", "manual": "Sync"}
LOG_TYPES = {WARNING: 1, ERROR: 2}      # else 0: a message


def deployment_json(view: AppView, d: DeploymentView, root: str) -> dict:
    """Kudu's DeployResult for `d`; `root` is the app's Kudu root URL (…/scm/APP)."""
    url = f"{root}/api/deployments/{d.id}"
    last_success = view.deployments.get(view.active_deployment or "")
    return {
        "id": d.id, "status": KUDU_STATUS[d.status], "status_text": d.message or str(d.status),
        "author_email": d.author_email, "author": d.author,
        "deployer": d.deployer or DEPLOYERS.get(d.trigger, d.trigger.capitalize()),
        "message": d.commit_message or "", "progress": "",
        "received_time": kudu_time(d.received_at), "start_time": kudu_time(d.started_at or d.received_at),
        "end_time": kudu_time(d.ended_at), "last_success_end_time":
            kudu_time(last_success.ended_at) if last_success else None,
        "complete": d.terminal, "active": d.id == view.active_deployment,
        "is_temp": False, "is_readonly": False, "url": url, "log_url": f"{url}/log",
        "site_name": view.name, "provisioningState": _provisioning(d),
    }


def log_json(deployment_id: str, lines: list[LogLine]) -> list[dict]:
    """Kudu's LogEntry list: one entry per line of the deployment's log, no details."""
    return [{"log_time": kudu_time(line.at), "id": f"{deployment_id}-{n}",
             "message": f"{line.step}: {line.message}" if line.step else line.message,
             "type": LOG_TYPES.get(line.level, 0), "details_url": None}
            for n, line in enumerate(lines, 1)]


def kudu_time(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _provisioning(d: DeploymentView) -> str:
    status = KUDU_STATUS[d.status]
    return "Succeeded" if status == SUCCESS else "Failed" if status == FAILED else "InProgress"
