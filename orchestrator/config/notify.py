"""Where Sluice tells people what happened (issue 18): the `notify:` channels, per app and at
the top level (for every app), and the notifier's own settings.

Each channel is `{type, events, ...}`: `webhook` (JSON, signed when a `secret` is set),
`kudu` (Kudu's PostDeployment hook JSON), `slack` (an incoming-webhook message, also what
Teams and Mattermost take) and the commit statuses `github`, `bitbucket`, `azure-devops`
(each with a `token`; `repository` defaults to the one the app's source URL names; `api_url`
to the provider's own). `events` filters by Sluice event type; commit statuses also send
the pending state when a deployment starts.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from orchestrator.config.sources import Duration, _Strict

# What a channel is told by default: how deployments end
ENDINGS = ("DeploymentSucceeded", "DeploymentFailed", "DeploymentRolledBack")
STARTED = "DeploymentStarted"
# What a channel may ask for (the events a notification can be made of)
NOTIFIABLE = ("DeploymentQueued", STARTED, "DeploymentSucceeded", "DeploymentFailed",
              "DeploymentSkipped", "DeploymentSuperseded", "DeploymentRolledBack",
              "RevisionRejected", "DriftDetected", "DriftRepaired")


class _Channel(_Strict):
    events: list[str] = Field(default_factory=lambda: list(ENDINGS))
    timeout: Annotated[Duration, Field(gt=0)] = 10.0

    @field_validator("events")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [e for e in value if e not in NOTIFIABLE]
        if unknown:
            raise ValueError(f"unknown event {unknown[0]!r}; one of: {', '.join(NOTIFIABLE)}")
        return value


class WebhookChannel(_Channel):
    type: Literal["webhook"]
    url: str
    secret: str | None = None           # HMAC-SHA256 of the body in X-Sluice-Signature-256
    headers: dict[str, str] = Field(default_factory=dict)


class KuduChannel(_Channel):
    type: Literal["kudu"]
    url: str


class SlackChannel(_Channel):
    type: Literal["slack"]
    url: str


class _StatusChannel(_Channel):
    token: str
    repository: str | None = None       # owner/name (github, bitbucket) or project/repository (azure-devops)
    context: str | None = None          # default sluice/{app}

    @field_validator("token")
    @classmethod
    def _some_token(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty (an environment variable set but empty?)")
        return value

    @field_validator("repository")
    @classmethod
    def _two_names(cls, value: str | None) -> str | None:
        if value is not None and (value.count("/") != 1 or "" in value.strip().split("/")):
            raise ValueError(f"{value!r} is not two names joined by '/' (owner/name, or "
                             "project/repository for azure-devops)")
        return value


class GitHubChannel(_StatusChannel):
    type: Literal["github"]
    api_url: str = "https://api.github.com"


class BitbucketChannel(_StatusChannel):
    type: Literal["bitbucket"]
    api_url: str = "https://api.bitbucket.org/2.0"


class AzureDevOpsChannel(_StatusChannel):
    type: Literal["azure-devops"]
    api_url: str = "https://dev.azure.com"      # {api_url}/{organization}/{project}/_apis/git/...
    organization: str | None = None             # default: the one the source URL names


Channel = Annotated[WebhookChannel | KuduChannel | SlackChannel | GitHubChannel | BitbucketChannel
                    | AzureDevOpsChannel, Field(discriminator="type")]
STATUS_TYPES = ("github", "bitbucket", "azure-devops")


class NotifierConfig(_Strict):
    concurrency: int = Field(default=8, ge=1, le=256)   # apps delivered to at once
    attempts: int = Field(default=8, ge=1, le=100)      # tries of a delivery before NotificationFailed
    backoff: Duration = 1.0                             # first wait between tries, doubling
    max_backoff: Duration = 300.0
    claim_after: Duration = 60.0        # a delivery another notifier took and did not finish: taken over
