"""`activate`: what tells the app's host that a new release is live (issue 15), run in order
after the switch: a command (argv, or a shell line), a signal to the process a pidfile names
(HUP to a process manager), or an HTTP call. Each gets what it is about: commands in
SLUICE_APP, SLUICE_DEPLOYMENT, SLUICE_REVISION, SLUICE_RELEASE, SLUICE_PREVIOUS_RELEASE and
SLUICE_TARGET (beside a build's minimal environment; no sandbox: activating acts on the
host), URLs and headers in `{app}`, `{deployment}`, `{revision}`, `{release}`,
`{previous_release}` and `{target}`. The first action that fails raises ActivationFailed
naming it; the runner then keeps the release live or rolls back (`on_failure`).
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx

from orchestrator.building.command import run_build_command
from orchestrator.config.steps import ActivateAction, CommandAction, HttpAction, SignalAction
from orchestrator.core.errors import ActivationFailed
from orchestrator.core.placeholders import fill
from orchestrator.deploying.before_switch import Candidate, command_environment, variables
from orchestrator.deploying.tls import verified_context

TAIL_LINES = 10


def activate(actions: list[ActivateAction], candidate: Candidate, data_dir: Path) -> None:
    for number, action in enumerate(actions, 1):
        try:
            if isinstance(action, CommandAction):
                _command(action, candidate, data_dir)
            elif isinstance(action, SignalAction):
                _signal(action)
            elif isinstance(action, HttpAction):
                _http(action, candidate)
        except ActivationFailed as exc:
            raise ActivationFailed(f"activate action {number} ({describe(action)}): {exc}") from None


def describe(action: ActivateAction) -> str:
    if isinstance(action, CommandAction):
        return f"command {action.command if isinstance(action.command, str) else ' '.join(action.command)!r}"
    if isinstance(action, SignalAction):
        return f"signal {action.signal.signal} to the pid in {action.signal.pidfile}"
    return f"{action.http.method} {action.http.url}"


def _command(action: CommandAction, candidate: Candidate, data_dir: Path) -> None:
    argv = ["/bin/sh", "-c", action.command] if isinstance(action.command, str) else action.command
    _, env = command_environment(candidate, data_dir)
    result = run_build_command(argv, candidate.release, env, timeout=action.timeout,
                               idle_timeout=action.timeout, on_output=lambda line: None)
    if not result.ok:
        how = "timed out" if result.timed_out else f"exited with code {result.exit_code}"
        last = "\n".join(result.tail[-TAIL_LINES:])
        raise ActivationFailed(how + (f"; its last lines:\n{last}" if last else ""))


def _signal(action: SignalAction) -> None:
    spec = action.signal
    try:
        pid = int(spec.pidfile.read_text().strip())
        os.kill(pid, signal.Signals[f"SIG{spec.signal}"])
    except OSError as exc:
        raise ActivationFailed(f"{spec.pidfile}: {exc.strerror or exc}") from None
    except ValueError:
        raise ActivationFailed(f"{spec.pidfile} does not hold a process id") from None


def _http(action: HttpAction, candidate: Candidate) -> None:
    spec, values = action.http, variables(candidate)
    try:
        answer = httpx.request(spec.method, fill(spec.url, values), timeout=action.timeout,
                               headers={k: fill(v, values) for k, v in spec.headers.items()},
                               verify=verified_context())
    except httpx.HTTPError as exc:
        raise ActivationFailed(f"{type(exc).__name__}: {exc}") from None
    expected = spec.expect or range(200, 400)
    if answer.status_code not in expected:
        raise ActivationFailed(f"answered {answer.status_code}")
