"""What runs around an app's files during a deployment, as configured per app: the build
(issue 14), the `before_switch` check, the `activate` actions after the switch and the
`health` probe (issue 15). `config/settings.py`'s AppConfig holds them."""
from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator

from orchestrator.config.sources import Duration, _Strict
from orchestrator.core import placeholders

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class BuildConfig(_Strict):
    """How an app is built during deployment (issue 14); `build: auto` and `build: none`
    are this with only `command` set."""
    command: str = "auto"                   # auto | none | a shell command line run at the app's root
    timeout: Annotated[Duration, Field(gt=0)] = 900.0        # the whole build
    idle_timeout: Annotated[Duration, Field(gt=0)] = 300.0   # no output for this long: killed
    env: dict[str, str] = Field(default_factory=dict)        # besides PATH, LANG, HOME, TMPDIR
    python: str = "python3"                 # the interpreter that installs requirements.txt
    sandbox: Literal["auto", "on", "off"] = "auto"          # bwrap: when present, required, never

    @field_validator("command", "python")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty (command: none builds nothing; python names an interpreter)")
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _variables(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        for name, setting in value.items():
            if not _ENV_NAME.match(str(name)):
                raise ValueError(f"{name!r} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
            if not isinstance(setting, str):
                # YAML reads 1, true or an empty value as something else than the text written.
                raise ValueError(f"{name}: the value must be a string: quote it (e.g. {name}: \"1\")")
        return value


class BeforeSwitchConfig(_Strict):
    """A check run in the new release (read-only) before the switch (issue 15): a non-zero
    exit fails the deployment, nothing switched. A plain string is the command."""
    command: str
    timeout: Annotated[Duration, Field(gt=0)] = 300.0

    @field_validator("command")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


class CommandAction(_Strict):
    """Run a command (argv, or a shell line) after the switch."""
    command: str | list[str]
    timeout: Annotated[Duration, Field(gt=0)] = 60.0


class SignalSpec(_Strict):
    pidfile: Path
    signal: str = "HUP"

    @field_validator("signal")
    @classmethod
    def _known(cls, value: str) -> str:
        name = value.upper().removeprefix("SIG")
        if f"SIG{name}" not in signal_names():
            raise ValueError(f"{value!r} is not a signal name (HUP, USR1, TERM, ...)")
        return name


class SignalAction(_Strict):
    """Send a signal to the process whose pid a file holds (a process manager, a server)."""
    signal: SignalSpec


def _http_url(cls, value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"{value!r} must be an http:// or https:// URL")
    return _known_placeholders(value)


def _header_values(cls, value: dict[str, str]) -> dict[str, str]:
    for name, setting in value.items():
        try:
            _known_placeholders(setting)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return value


class HttpSpec(_Strict):
    url: str
    method: str = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    expect: list[int] | None = None         # the statuses that mean done; none given: 200-399

    # as the health probe's: a typo'd {placeholder} is refused at load, not sent to the host
    _url = field_validator("url")(_http_url)
    _headers = field_validator("headers")(_header_values)


class HttpAction(_Strict):
    """Call a URL after the switch (a reload endpoint, a platform's API)."""
    http: HttpSpec
    timeout: Annotated[Duration, Field(gt=0)] = 30.0


class HealthConfig(_Strict):
    """The HTTP probe that proves a release healthy after the switch (issue 15):
    `healthy_after` answers in a row that `expect` and hold `body_contains` within
    `deadline` of the switch, then none failing for `stable_for`."""
    url: str
    expect: list[int] | None = None         # the statuses that mean healthy; none given: 200-399
    body_contains: str | None = None        # e.g. {revision}: the new code is the one answering
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Annotated[Duration, Field(gt=0)] = 5.0          # each probe
    interval: Annotated[Duration, Field(gt=0)] = 1.0         # between probes' starts
    healthy_after: int = Field(default=1, ge=1)              # successes in a row that mean healthy
    deadline: Annotated[Duration, Field(gt=0)] = 60.0        # to become healthy, from the switch
    stable_for: Annotated[Duration, Field(ge=0)] = 0.0       # then probed this long: one failure fails

    _url = field_validator("url")(_http_url)
    _headers = field_validator("headers")(_header_values)

    @field_validator("body_contains")
    @classmethod
    def _expected_text(cls, value: str | None) -> str | None:
        if value is not None and not value:
            raise ValueError("must not be empty (leave it out to check only the status)")
        return value if value is None else _known_placeholders(value)


def _known_placeholders(text: str) -> str:
    strangers = placeholders.unknown(text)
    if strangers:
        raise ValueError(f"unknown placeholder {strangers[0]} (known: "
                         f"{', '.join('{' + name + '}' for name in placeholders.NAMES)})")
    return text


def _action_kind(value: Any) -> str | None:
    """Which action a list entry is, by its key (so a mistake is reported for that kind)."""
    if isinstance(value, dict):
        return next((kind for kind in ("command", "signal", "http") if kind in value), None)
    kinds: dict[type, str] = {CommandAction: "command", SignalAction: "signal", HttpAction: "http"}
    return kinds.get(type(value))


ActivateAction = Annotated[
    Annotated[CommandAction, Tag("command")] | Annotated[SignalAction, Tag("signal")]
    | Annotated[HttpAction, Tag("http")],
    Discriminator(_action_kind, custom_error_type="action",
                  custom_error_message="an action is {command: ...}, {signal: {pidfile, signal}} "
                                       "or {http: {url, method, headers, expect}}")]


def signal_names() -> set[str]:
    return {s.name for s in signal.Signals}
