"""Load and validate the configuration: config/sluice.yaml (or --config / SLUICE_CONFIG).

Strings may say ${NAME} to take an environment variable; the values that are secrets (see
_holds_secret) are kept beside the config, never in it, for core/masking.py. Relative paths
(and local repository paths) resolve against the working directory. Every problem becomes one
ConfigError naming the file and the key.
"""
from __future__ import annotations

import contextlib
import gc
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml
from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from orchestrator.config.api_settings import ApiConfig as ApiConfig
from orchestrator.config.env_refs import ENV_REF
from orchestrator.config.hosts import HostName, Rollout, check_hosts, target_on
from orchestrator.config.location import DEFAULT_CONFIG as DEFAULT_CONFIG
from orchestrator.config.location import config_file as config_file
from orchestrator.config.notify import Channel, NotifierConfig
from orchestrator.config.sources import SOURCE_TYPES, Duration, ManualSourceConfig, SourceConfig, _Strict
from orchestrator.config.status_repositories import check_app_channels
from orchestrator.config.steps import ActivateAction, BeforeSwitchConfig, BuildConfig, HealthConfig
from orchestrator.core.errors import ConfigError
from orchestrator.core.masking import MIN_LENGTH, mask, says_secret

APP_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
# An app's settings that run or send something: whatever ${NAME} gives them is a secret.
_STEPS = ("activate", "health", "before_switch", "build", "notify")
# libyaml's parser when present: ten times faster.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
    build: BuildConfig = BuildConfig()
    before_switch: BeforeSwitchConfig | None = None
    activate: list[ActivateAction] = Field(default_factory=list)
    health: HealthConfig | None = None
    # when activating or the health probe fails; unset: rollback with a health probe, else keep
    on_failure: Literal["keep", "rollback"] = "keep"
    notify: list[Channel] = Field(default_factory=list)     # besides the top-level notify:
    hosts: list[HostName] = Field(default_factory=list)     # none: where its workers build it
    rollout: Rollout = "all"
    host_timeout: Duration = 600.0    # a host that has not switched by then fails the deployment

    @model_validator(mode="before")
    @classmethod
    def _on_failure_default(cls, data: Any) -> Any:
        # A probe says a release is broken; with none there is nothing to roll back for.
        if isinstance(data, dict) and data.get("on_failure") is None:
            return {**data, "on_failure": "keep" if data.get("health") is None else "rollback"}
        return data

    @field_validator("before_switch", mode="before")
    @classmethod
    def _command_shorthand(cls, value: Any) -> Any:
        return {"command": value} if isinstance(value, str) else value

    @field_validator("build", mode="before")
    @classmethod
    def _build_shorthand(cls, value: Any) -> Any:
        if value in ("auto", "none"):
            return {"command": value}
        if not isinstance(value, (dict, BuildConfig)):
            raise ValueError(f"must be auto, none, or a mapping of command, timeout, idle_timeout, env, "
                             f"python, sandbox; not {value!r}")
        return value

    @model_validator(mode="after")
    def _statuses_have_commits(self):
        check_app_channels(self.notify, self.source)
        return self

    @model_validator(mode="after")
    def _hosts_and_target(self):
        check_hosts(self.hosts, self.target)
        return self

    def target_on(self, host: str | None) -> Path:
        """The app's target on `host` (None: the app has no hosts)."""
        return self.target if host is None else target_on(self.target, host)


class WorkerConfig(_Strict):
    build_concurrency: int = Field(default=1, ge=1)   # builds one worker runs at once
    # where host workers fetch snapshots: the API as the hosts reach it; unset: http://{api.listen}
    store_url: str | None = None
    converge_interval: Duration = 30.0    # a host's worker brings its apps in step this often


class EventsConfig(_Strict):
    # an app's newest events kept in Redis; older ones go to {data_dir}/archive (core/stream_tail.py)
    keep_in_redis: int = Field(default=500, ge=10)


class SluiceConfig(_Strict):
    data_dir: Path = Path("./var")
    redis_url: str | None = None
    gc_interval: Duration = 300.0     # at most one garbage collection of the store per interval
    scrub_interval: Duration = 60.0   # a round of the store's scrub per interval; 0: never
    scrub_blobs: int = Field(default=1000, ge=1)      # blobs hashed per round
    lease_ttl: Duration = 30.0        # a dead worker's app lease frees itself after this
    drift_check: Duration = 30.0      # how often pollers compare targets with active releases; 0: never
    api: ApiConfig = ApiConfig()
    ftp: FtpConfig = FtpConfig()
    worker: WorkerConfig = WorkerConfig()
    events: EventsConfig = EventsConfig()
    notify: list[Channel] = Field(default_factory=list)     # every app's deployments, told there
    notifier: NotifierConfig = NotifierConfig()
    public_url: str | None = None       # where people reach the dashboard: links in notifications
    apps: dict[str, AppConfig] = Field(default_factory=dict)
    # ${NAME} -> the secret it gave (load_config): a private attribute, so no dump shows it
    _secrets: dict[str, str] = PrivateAttr(default_factory=dict)
    _redis_url_written: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _bitbucket_statuses_link(self):
        # Bitbucket refuses a build status without a URL: the deployment's log is its link.
        places = [f"notify.{n}" for n, c in enumerate(self.notify) if c.type == "bitbucket"] + [
            f"apps.{name}.notify.{n}" for name, app in self.apps.items()
            for n, c in enumerate(app.notify) if c.type == "bitbucket"]
        if places and not self.public_url:
            raise ValueError(f"public_url: required by the bitbucket channel at {places[0]} "
                             "(Bitbucket's build statuses link to the deployment's log)")
        return self

    @property
    def secrets(self) -> MappingProxyType[str, str]:
        return MappingProxyType(self._secrets)

    @property
    def redis_url_as_written(self) -> str | None:
        """redis_url as the file (or SLUICE_REDIS_URL) gave it, each ${NAME} in it not put in:
        what may be kept on disk (config/env_refs.py puts them in)."""
        return self._redis_url_written


def load_config(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None) -> SluiceConfig:
    """Read, expand and validate the config; raises ConfigError with a readable message."""
    with _collector_paused():
        return _load(path, env)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """A config of thousands of apps is some hundred thousand new objects, none of them in
    a cycle: a running collector walks them all again at each of its passes (a third of
    load_config's time at 5,000 apps, bench/scale_apps.py)."""
    running = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if running:
            gc.enable()


def _load(path: str | os.PathLike | None, env: Mapping[str, str] | None) -> SluiceConfig:
    env = os.environ if env is None else env
    path = Path(path) if path else config_file(env)
    raw = _read_yaml(path)
    redis_url_written = "${SLUICE_REDIS_URL}" if env.get("SLUICE_REDIS_URL") else raw.get("redis_url")
    secrets: dict[str, str] = {}
    raw = _expand(raw, env, path, (), secrets)
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
        config = _resolved(SluiceConfig.model_validate(raw), path)
    except ValidationError as exc:      # it may quote a value: a secret shows as its ${NAME}
        raise ConfigError(mask(_describe(path, exc), secrets)) from None
    except ConfigError as exc:
        raise ConfigError(mask(str(exc), secrets)) from None
    config._secrets = secrets
    config._redis_url_written = redis_url_written if isinstance(redis_url_written, str) else None
    return config


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


def _expand(value: Any, env, path: Path, where: tuple, secrets: dict[str, str]) -> Any:
    """`value` with each ${NAME} replaced; the secrets among them go into `secrets`.
    `where`: the keys down to `value`, list positions as ints."""
    if isinstance(value, dict):
        return {k: _expand(v, env, path, where + (str(k),), secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, env, path, where + (i,), secrets) for i, v in enumerate(value)]
    if isinstance(value, str):
        def sub(m: re.Match) -> str:
            name = m.group(1)
            if name not in env:
                raise ConfigError(f"{path}: {'.'.join(map(str, where))}: environment variable "
                                  f"{name} is not set")
            if len(env[name]) >= MIN_LENGTH and _holds_secret(where, name):
                secrets[name] = env[name]
            return env[name]
        return ENV_REF.sub(sub, value)
    return value


def _holds_secret(where: tuple, name: str) -> bool:
    """Whether ${name} at `where` gives a secret: anything an app's steps run or send
    (activate, health, before_switch, build), a key named as a secret is (token, password,
    app_secret, ssh_key... and the azure-devops source's header.value), or a variable whose
    own name says so (${GITHUB_TOKEN} in a URL)."""
    keys = [key for key in where if isinstance(key, str)]
    return (says_secret(name) or (len(keys) > 2 and keys[0] == "apps" and keys[2] in _STEPS)
            or bool(keys) and keys[0] == "notify"
            or bool(keys) and (says_secret(keys[-1]) or keys[-2:] == ["header", "value"]))


def _describe(path: Path, exc: ValidationError) -> str:
    lines = [f"{_location(err['loc']) or '(top level)'}: {_message(err)}" for err in exc.errors()]
    return f"{path}: " + (lines[0] if len(lines) == 1 else "\n  " + "\n  ".join(lines))


def _location(loc: tuple) -> str:
    parts = [str(p) for i, p in enumerate(loc) if not _union_tag(loc, i)]
    return ".".join(p for p in parts if not p.startswith("function-"))


def _union_tag(loc: tuple, i: int) -> bool:
    """pydantic puts the tag of a tagged union into the path: a source's type (`git`), an
    activate action's kind (apps.a.activate.0.http.http.url)."""
    if i and loc[i - 1] == "source":
        return loc[i] in SOURCE_TYPES
    return i > 1 and loc[i - 2] == "activate" and isinstance(loc[i - 1], int)


def _message(err: Mapping[str, Any]) -> str:
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
