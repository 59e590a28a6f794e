"""`before_switch`: a check of the new release before the target points at it (issue 15),
e.g. smoke tests. It runs at the release's root as a build command runs (its own process
group, `timeout`, a minimal environment, the app's build home), with what it checks in
SLUICE_APP, SLUICE_DEPLOYMENT, SLUICE_REVISION, SLUICE_RELEASE, SLUICE_PREVIOUS_RELEASE and
SLUICE_TARGET; under bwrap (`build.sandbox`) the release is read-only to it and Sluice's
data and config are out of sight. A non-zero exit fails the deployment with the command and
its last lines: nothing is switched, the live site stays as it was.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.building.command import build_environment, run_build_command, sandbox_for
from orchestrator.config.settings import AppConfig, config_file
from orchestrator.core.errors import BeforeSwitchFailed

TAIL_LINES = 20


@dataclass(frozen=True)
class Candidate:
    """The release about to go live, and what it replaces."""
    app: str
    deployment_id: str
    revision: str
    release: Path
    previous: Path | None
    target: Path
    host: str = ""          # the app's host it goes live on (issue 19); "": no hosts


def variables(candidate: Candidate) -> dict[str, str]:
    """What a check or an activation is about, by name (`{name}` placeholders, SLUICE_NAME)."""
    return {"app": candidate.app, "deployment": candidate.deployment_id,
            "revision": candidate.revision, "release": str(candidate.release),
            "previous_release": str(candidate.previous or ""), "target": str(candidate.target),
            "host": candidate.host}


def command_environment(candidate: Candidate, data_dir: Path) -> tuple[Path, dict[str, str]]:
    """The app's build home (made) and a build's minimal environment with SLUICE_* variables."""
    home = data_dir / "build-home" / candidate.app
    home.mkdir(parents=True, exist_ok=True)
    return home, build_environment(home, {f"SLUICE_{k.upper()}": v for k, v in variables(candidate).items()})


def check_before_switch(config: AppConfig, data_dir: Path, candidate: Candidate) -> None:
    """Run the app's `before_switch` check, if it has one; BeforeSwitchFailed if it fails."""
    check = config.before_switch
    if check is None:
        return
    home, env = command_environment(candidate, data_dir)
    sandbox = sandbox_for(config.build.sandbox, [home], hidden=[data_dir.resolve(), config_file().resolve()],
                          readable=[candidate.release])
    result = run_build_command(["/bin/sh", "-c", check.command], candidate.release, env,
                               timeout=check.timeout, idle_timeout=check.timeout,
                               on_output=lambda line: None, sandbox=sandbox)
    if result.ok:
        return
    how = (f"was killed after its timeout ({check.timeout:g} s)" if result.timed_out
           else f"exited with code {result.exit_code}")
    last = "\n".join(result.tail[-TAIL_LINES:])
    raise BeforeSwitchFailed(f"before_switch `{check.command}` {how}: nothing switched"
                             + (f"; its last lines:\n{last}" if last else ""))
