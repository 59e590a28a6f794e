"""Commit statuses: the deployment's state on the commit it deploys, in GitHub (a commit
status), Bitbucket (a build status) or Azure DevOps (a Git commit status), linking to the
deployment's log — what branch protection can require.

Pending when a deployment starts, then success, failure (failed, rolled back) or error
(superseded after it started; one superseded while waiting never marked its commit). Each
app's statuses go in order (lanes.py), so a commit never goes back from its end to pending.

Only a revision that is a commit of the marked repository gets a status: a deployment of a
Git source's commit (poll, webhook, push, manual, redeploy, rollback), or one promoted from
an app whose source is the same repository. Zips and imports (their revision is a snapshot,
or a commit of the built-in repository only) and promotions from elsewhere get none.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
from urllib.parse import quote

from orchestrator.config.notify import AzureDevOpsChannel, BitbucketChannel, GitHubChannel
from orchestrator.config.settings import SluiceConfig
from orchestrator.config.sources import SourceConfig
from orchestrator.config.status_repositories import Repository, has_commits, named_by, status_repository
from orchestrator.core.projections import AppView, DeploymentView
from orchestrator.notifying import hooks
from orchestrator.notifying.delivery import Request
from orchestrator.notifying.messages import STATES, SUMMARIES, Notification
from orchestrator.sources.repository_urls import same_repository

StatusChannel = GitHubChannel | BitbucketChannel | AzureDevOpsChannel
COMMIT_ID = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
HANDED_OVER = ("zipdeploy", "import")
DESCRIPTION_MAX = 140           # GitHub refuses longer descriptions (422)
BITBUCKET_KEY_MAX = 40          # and Bitbucket longer keys (400)
BITBUCKET_STATES = {"pending": "INPROGRESS", "success": "SUCCESSFUL", "failure": "FAILED",
                    "error": "STOPPED"}
AZURE_STATES = {"pending": "pending", "success": "succeeded", "failure": "failed", "error": "error"}


def status_request(channel: StatusChannel, note: Notification, delivery: str, view: AppView,
                   config: SluiceConfig) -> Request | None:
    """The request setting the status of the deployment's commit; None when the event sets
    none or the revision is no commit of a repository the channel marks."""
    d, state = note.deployment, STATES.get(note.type)
    app = config.apps.get(note.app)
    if d is None or state is None or app is None or (state == "error" and d.started_at is None):
        return None
    repository = status_repository(channel.type, channel.repository,
                                   getattr(channel, "organization", None), app.source)
    if repository is None or not is_commit_of_source(d, note.app, config, channel.type):
        return None
    context = channel.context or f"sluice/{note.app}"
    body, url, auth = _render(channel, repository, d.revision, state, context, note)
    headers = {**hooks.headers(note, delivery), "Authorization": auth}
    if isinstance(channel, GitHubChannel):
        headers |= {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
    return Request("POST", url, json.dumps(body).encode(), headers)


def is_commit_of_source(d: DeploymentView, app: str, config: SluiceConfig, kind: str) -> bool:
    if d.trigger in HANDED_OVER or d.revision in (d.snapshot, d.preset_snapshot) \
            or not COMMIT_ID.match(d.revision):
        return False
    if d.trigger != "promote":
        return True
    origin = config.apps.get((d.origin or "").split("/", 1)[0])
    return origin is not None and _same_repository(origin.source, config.apps[app].source, kind)


def _same_repository(a: SourceConfig, b: SourceConfig, kind: str) -> bool:
    """Whether two sources are one repository: the same URL, or the same one of the provider."""
    if not (has_commits(a) and has_commits(b)):
        return False
    named = named_by(kind, a)
    return same_repository(a.url, b.url) or (named is not None and named == named_by(kind, b))  # type: ignore[union-attr]


def description(note: Notification) -> str:
    d = note.deployment
    text = f"Deployment {d.id if d else ''} {SUMMARIES.get(note.type, note.type)}"
    if note.type in ("DeploymentFailed", "DeploymentRolledBack") and note.reason:
        text += f": {note.reason}"
    return text if len(text) <= DESCRIPTION_MAX else text[:DESCRIPTION_MAX - 1] + "…"


def _render(channel: StatusChannel, repository: Repository, sha: str, state: str, context: str,
            note: Notification) -> tuple[dict, str, str]:
    """(body, url, Authorization) in the provider's words."""
    api, path = channel.api_url.rstrip("/"), quote(repository.path)
    link = {"target_url": note.log_url} if note.log_url else {}
    if isinstance(channel, GitHubChannel):
        return ({"state": state, "description": description(note), "context": context, **link},
                f"{api}/repos/{path}/statuses/{sha}", f"Bearer {channel.token}")
    if isinstance(channel, BitbucketChannel):
        return ({"key": bitbucket_key(context), "state": BITBUCKET_STATES[state], "name": context,
                 "description": description(note), **({"url": note.log_url} if note.log_url else {})},
                f"{api}/repositories/{path}/commit/{sha}/statuses/build", _bitbucket_auth(channel.token))
    project, name = (quote(part, safe="") for part in repository.path.split("/"))
    genre, _, label = context.rpartition("/")
    body = {"state": AZURE_STATES[state], "description": description(note),
            "context": {"name": label, **({"genre": genre} if genre else {})},
            **({"targetUrl": note.log_url} if note.log_url else {})}
    pat = base64.b64encode(f":{channel.token}".encode()).decode()
    return (body, f"{api}/{quote(repository.organization or '', safe='')}/{project}/_apis/git/"
                  f"repositories/{name}/commits/{sha}/statuses?api-version=7.1", f"Basic {pat}")


def bitbucket_key(context: str) -> str:
    """The context as Bitbucket's key, which holds 40 characters at most: a longer one keeps
    its start and a hash of the whole, so two long contexts stay two keys."""
    if len(context) <= BITBUCKET_KEY_MAX:
        return context
    return f"{context[:BITBUCKET_KEY_MAX - 9]}-{hashlib.sha256(context.encode()).hexdigest()[:8]}"


def _bitbucket_auth(token: str) -> str:
    """An access token is a Bearer; `user:password` (an app password, an API token with its
    account's email) goes as Basic, as Bitbucket takes those."""
    if ":" in token:
        return "Basic " + base64.b64encode(token.encode()).decode()
    return f"Bearer {token}"
