"""Load and validate the configuration: config/sluice.yaml (or --config / SLUICE_CONFIG).

Strings may say ${NAME} to take an environment variable. Relative paths (and local
repository paths) resolve against the working directory. Every problem becomes one
ConfigError naming the file and the key.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, ValidationError,
                      field_validator, model_validator)

from .errors import ConfigError
from .urls import sanitize_url

DEFAULT_CONFIG = Path("config/sluice.yaml")
APP_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
# libyaml's parser when present: ten times faster, and workers read the config every task.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
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
    secret: str = Field(min_length=1)       # the hook's secret: HMAC-SHA256 of each delivery


class BitbucketSourceConfig(_WebhookSource):
    type: Literal["bitbucket"]
    secret: str = Field(min_length=1)
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
    password: str = Field(min_length=1)


class HeaderAuth(_Strict):
    name: str = Field(min_length=1)
    value: str = Field(min_length=1)


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


class ApiConfig(_Strict):
    listen: str = "127.0.0.1:8080"          # where the API (webhooks, ...) listens
    token: str | None = None                # bearer token for mutating endpoints (and reads, per `reads`)
    reads: Literal["loopback", "open", "token"] = "loopback"   # who may read without the token

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"listen {value!r} must be HOST:PORT, e.g. 127.0.0.1:8080")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


def builtin_repository(data_dir: Path, app: str) -> Path:
    return Path(data_dir) / "repos" / f"{app}.git"


class FtpConfig(_Strict):
    """FTP/FTPS access to apps' files (`sluice ftp`; `sluice up` starts it when listen is set)."""
    listen: str | None = None               # HOST:PORT, e.g. 127.0.0.1:2121
    public_host: str | None = None          # the address clients are told for passive mode
    passive_ports: str = "60000-60099"
    max_connections: int = Field(default=64, ge=1)
    max_connections_per_ip: int = Field(default=8, ge=1)
    certificate: Path | None = None         # PEM; with private_key, enables explicit FTPS (AUTH TLS)
    private_key: Path | None = None
    require_tls: bool = False               # refuse logins before AUTH TLS

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        return value if value is None else ApiConfig._host_port(value)

    @field_validator("passive_ports")
    @classmethod
    def _port_range(cls, value: str) -> str:
        low, _, high = value.partition("-")
        if not (low.isdigit() and high.isdigit() and 1024 <= int(low) <= int(high) < 65536):
            raise ValueError(f"passive_ports {value!r} must be LOW-HIGH, e.g. 60000-60099")
        return value

    @property
    def passive_range(self) -> range:
        low, _, high = self.passive_ports.partition("-")
        return range(int(low), int(high) + 1)

    @model_validator(mode="after")
    def _tls_pair(self):
        if bool(self.certificate) != bool(self.private_key):
            raise ValueError("ftp needs both certificate and private_key for FTPS, or neither")
        if self.require_tls and not self.certificate:
            raise ValueError("ftp.require_tls needs certificate and private_key")
        return self


class RetryPolicy(_Strict):
    attempts: int = Field(default=5, ge=1, le=100)
    base: Duration = 2.0
    max: Duration = 60.0


class AppConfig(_Strict):
    layout: Literal["functions", "site"] = "functions"
    target: Path
    source: SourceConfig = ManualSourceConfig(type="manual")
    retry: RetryPolicy = RetryPolicy()
    keep_releases: int = Field(default=5, ge=1, le=1000)


class SluiceConfig(_Strict):
    data_dir: Path = Path("./var")
    redis_url: str | None = None
    gc_interval: Duration = 300.0     # at most one garbage collection of the store per interval
    lease_ttl: Duration = 30.0        # a dead worker's app lease frees itself after this
    api: ApiConfig = ApiConfig()
    ftp: FtpConfig = FtpConfig()
    apps: dict[str, AppConfig] = Field(default_factory=dict)


def _looks_remote(url: str) -> bool:
    return "://" in url or re.match(r"^[\w.-]+@[\w.-]+:", url) is not None


def load_config(path: str | os.PathLike | None = None, env: dict | None = None) -> SluiceConfig:
    """Read, expand and validate the config; raises ConfigError with a readable message."""
    env = os.environ if env is None else env
    path = Path(path or env.get("SLUICE_CONFIG") or DEFAULT_CONFIG)
    raw = _read_yaml(path)
    raw = _expand(raw, env, path, ())
    _check_app_names(raw, path)
    if env.get("SLUICE_REDIS_URL"):
        raw["redis_url"] = env["SLUICE_REDIS_URL"]
    if env.get("SLUICE_DATA_DIR"):
        raw["data_dir"] = env["SLUICE_DATA_DIR"]
    if env.get("SLUICE_API_LISTEN"):
        raw["api"] = {**(raw.get("api") or {}), "listen": env["SLUICE_API_LISTEN"]}
    if env.get("SLUICE_FTP_LISTEN"):
        raw["ftp"] = {**(raw.get("ftp") or {}), "listen": env["SLUICE_FTP_LISTEN"]}
    try:
        config = SluiceConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(path, exc)) from None
    return _resolved(config, path)


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    try:
        raw = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys (data_dir, apps, ...)")
    return raw


def _check_app_names(raw: dict, path: Path) -> None:
    for name in raw.get("apps") or {}:
        if not APP_NAME.match(str(name)):
            raise ConfigError(f"{path}: apps.{name}: app name {str(name)!r} must match "
                              "[a-z0-9][a-z0-9-]* (lower-case letters, digits, hyphens)")


def _expand(value: Any, env, path: Path, where: tuple) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v, env, path, where + (str(k),)) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, env, path, where + (str(i),)) for i, v in enumerate(value)]
    if isinstance(value, str):
        def sub(m: re.Match) -> str:
            if m.group(1) not in env:
                raise ConfigError(f"{path}: {'.'.join(where)}: environment variable "
                                  f"{m.group(1)} is not set")
            return env[m.group(1)]
        return _ENV_REF.sub(sub, value)
    return value


def _describe(path: Path, exc: ValidationError) -> str:
    lines = [f"{_location(err['loc']) or '(top level)'}: {_message(err)}" for err in exc.errors()]
    return f"{path}: " + (lines[0] if len(lines) == 1 else "\n  " + "\n  ".join(lines))


def _location(loc: tuple) -> str:
    # pydantic puts the discriminator's value (e.g. "git") into the path of a tagged union.
    parts = [str(p) for i, p in enumerate(loc) if not (i and loc[i - 1] == "source")
             or p not in SOURCE_TYPES]
    return ".".join(p for p in parts if not p.startswith("function-"))


def _message(err: dict) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "required key is missing"
    if err["type"] == "union_tag_invalid":
        return f"unknown source type {err['ctx']['tag']!r} (expected one of: {', '.join(SOURCE_TYPES)})"
    if err["type"] == "union_tag_not_found":
        return f"required key 'type' is missing (one of: {', '.join(SOURCE_TYPES)})"
    return err["msg"].removeprefix("Value error, ")


def _resolved(config: SluiceConfig, path: Path) -> SluiceConfig:
    data_dir = _absolute(config.data_dir)
    apps = {name: app.model_copy(update={"target": _absolute(app.target)})
            for name, app in config.apps.items()}
    for name, app in apps.items():
        if app.source.type == "localgit":
            url = str(builtin_repository(data_dir, name))
            apps[name] = app.model_copy(update={"source": app.source.model_copy(update={"url": url})})
    seen: dict[Path, str] = {}
    for name, app in apps.items():
        if app.target in seen:
            raise ConfigError(f"{path}: apps.{name}.target: {app.target} is also the target of "
                              f"app {seen[app.target]!r}; each app needs its own target")
        seen[app.target] = name
    return config.model_copy(update={"data_dir": data_dir, "apps": apps})


def _absolute(p: Path) -> Path:
    return Path(os.path.abspath(p.expanduser()))
