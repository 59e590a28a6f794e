"""The configuration's building blocks and its source types: one model per `source.type`.

`orchestrator.config.settings` loads the file; these are the models of its `source` keys.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from orchestrator.core.urls import sanitize_url

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any) -> float:
    """'30s', '5m', '1h', '500ms' or a number of seconds -> seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"invalid duration {value!r} (use e.g. 500ms, 30s, 5m, 1h)")
    return float(match.group(1)) * _UNITS[match.group(2)]


Duration = Annotated[float, BeforeValidator(parse_duration)]

MIN_SECRET_LENGTH = 16


def _unguessable(value: str) -> str:
    """A shared secret that lets callers in (the API's token, a webhook's secret, what a
    service hook sends) can be neither empty, which `${VAR}` set but empty gives and which an
    empty `Bearer` would then match, nor short enough to guess."""
    if not value.strip():
        raise ValueError("must not be empty (an environment variable set but empty?)")
    if len(value) < MIN_SECRET_LENGTH:
        raise ValueError(f"too short for a secret: use at least {MIN_SECRET_LENGTH} characters "
                         "(e.g. the output of `openssl rand -hex 32`)")
    return value


Secret = Annotated[str, AfterValidator(_unguessable)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _plain_folder(value: str) -> str:
    """A folder path as 'a/b': no leading or trailing slash, no '.' or '..'."""
    parts = [p for p in value.strip("/").split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ValueError(f"path {value!r} must be a plain folder path (no '.' or '..')")
    return "/".join(parts)


class RepositorySource(_Strict):
    """A version-controlled source: one branch (and maybe one subfolder) of a repository."""
    url: str = Field(min_length=1)
    branch: str = "master"
    path: str = ""
    poll_interval: Duration = 30.0          # 0: never polled (webhooks only)
    username: str | None = None             # HTTPS credentials (a token goes in password)
    password: str | None = None
    ssh_key: Path | None = None             # private key for ssh:// and scp-like URLs
    if TYPE_CHECKING:
        # Each concrete source declares its own Literal `type`; declared here it would
        # come first in the dump that fingerprints the settings, and change every fingerprint.
        type: str

    @property
    def scm(self) -> str:
        return "git"

    _relative_path = field_validator("path")(lambda cls, value: _plain_folder(value))

    def describe(self) -> str:
        path = f" /{self.path}" if self.path else ""
        return f"{self.type} {sanitize_url(self.url)} @ {self.branch}{path}"

    @field_validator("url")
    @classmethod
    def _absolute_local_url(cls, value: str) -> str:
        return value if _looks_remote(value) else str(Path(value).expanduser().resolve())


class GitSourceConfig(RepositorySource):
    type: Literal["git"]


class HgSourceConfig(RepositorySource):
    type: Literal["hg"]
    branch: str = "default"

    @property
    def scm(self) -> str:
        return "hg"


class _WebhookSource(RepositorySource):
    poll_interval: Duration = 600.0         # polling is only the safety net


class GitHubSourceConfig(_WebhookSource):
    type: Literal["github"]
    secret: Secret                          # the hook's secret: HMAC-SHA256 of each delivery


class BitbucketSourceConfig(_WebhookSource):
    type: Literal["bitbucket"]
    secret: Secret
    repository_scm: Literal["git", "hg"] = Field("git", alias="scm")
    branch: str = ""                        # default: master (git) or default (hg)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def scm(self) -> str:
        return self.repository_scm

    @model_validator(mode="after")
    def _default_branch(self):
        if not self.branch:
            object.__setattr__(self, "branch", "default" if self.repository_scm == "hg" else "master")
        return self


class BasicAuth(_Strict):
    username: str = Field(min_length=1)
    password: Secret


class HeaderAuth(_Strict):
    name: str = Field(min_length=1)
    value: Secret


class AzureDevOpsSourceConfig(_WebhookSource):
    type: Literal["azure-devops"]
    basic_auth: BasicAuth | None = None     # what the service hook sends (it has no signature)
    header: HeaderAuth | None = None        # and/or a header it sends

    @model_validator(mode="after")
    def _some_auth(self):
        if self.basic_auth is None and self.header is None:
            raise ValueError("azure-devops sources need basic_auth and/or header to check deliveries")
        return self


class _CloudFolderSource(_Strict):
    """A folder in a cloud drive; `path` is the folder to deploy ('' for the whole drive)."""
    path: str = ""
    if TYPE_CHECKING:
        type: str                           # declared by each concrete source, as above

    @property
    def scm(self) -> str:
        return self.type

    _folder = field_validator("path")(lambda cls, value: _plain_folder(value))

    def describe(self) -> str:
        return f"{self.type} /{self.path}"


class DropboxSourceConfig(_CloudFolderSource):
    """An app key with its secret and a refresh token (what an app's OAuth flow yields), or a
    plain access token."""
    type: Literal["dropbox"]
    app_key: str | None = None
    app_secret: str | None = None
    refresh_token: str | None = None
    access_token: str | None = None
    poll_interval: Duration = 600.0         # a safety net: longpoll sees changes in seconds
    longpoll: bool = True

    @model_validator(mode="after")
    def _credentials(self):
        if not self.access_token and not (self.app_key and self.refresh_token):
            raise ValueError("dropbox sources need app_key and refresh_token (and app_secret "
                             "unless the app uses PKCE), or access_token")
        return self


class OneDriveSourceConfig(_CloudFolderSource):
    """Business drives: an app registration's client credentials and the drive's id.
    Personal drives: a delegated refresh token (tenant `consumers`)."""
    type: Literal["onedrive"]
    client_id: str = Field(min_length=1)
    tenant: str = "consumers"
    client_secret: str | None = None
    drive_id: str | None = None
    refresh_token: str | None = None
    authority_host: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com/v1.0"
    poll_interval: Duration = 30.0

    @model_validator(mode="after")
    def _one_way_in(self):
        if self.client_secret and not self.drive_id:
            raise ValueError("onedrive sources with client_secret (app-only) need drive_id")
        if not self.client_secret and not self.refresh_token:
            raise ValueError("onedrive sources need client_secret and drive_id (business), "
                             "or refresh_token (personal)")
        return self


class LocalGitSourceConfig(RepositorySource):
    """The app's built-in repository (data_dir/repos/APP.git), served by the API at
    /git/APP.git: a push to `branch` deploys that revision."""
    type: Literal["localgit"]
    url: str = ""                           # filled in: the built-in repository's path
    poll_interval: Duration = 0.0           # pushes deploy at once; nothing to poll

    def describe(self) -> str:
        return f"localgit (built-in repository) @ {self.branch}"


class ManualSourceConfig(_Strict):
    """No source: the app is not on continuous deployment. Its files change only through
    `sluice import` (FTP serves them read-only: releases are immutable)."""
    type: Literal["manual"]
    poll_interval: Duration = 0.0

    @property
    def scm(self) -> str:
        return "manual"

    def describe(self) -> str:
        return "manual (not on continuous deployment)"


SourceConfig = Annotated[GitSourceConfig | HgSourceConfig | GitHubSourceConfig |
                         BitbucketSourceConfig | AzureDevOpsSourceConfig | DropboxSourceConfig |
                         OneDriveSourceConfig | LocalGitSourceConfig | ManualSourceConfig,
                         Field(discriminator="type")]
SOURCE_TYPES = ("git", "hg", "github", "bitbucket", "azure-devops", "dropbox", "onedrive",
                "localgit", "manual")
WEBHOOK_TYPES = ("github", "bitbucket", "azure-devops")


def _looks_remote(url: str) -> bool:
    return "://" in url or re.match(r"^[\w.-]+@[\w.-]+:", url) is not None

