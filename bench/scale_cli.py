"""Fast CLI: import only what a command uses (issue 16).

    .venv/bin/python bench/scale_cli.py [--apps 1000] [--runs 15]

Cold starts, each the median of --runs fresh processes, every command once per round so
that the machine's load falls on all of them alike, beside `python -c pass` measured in the
same rounds:
(a) `sluice --help`; target <= 4x; and `import orchestrator.cli.main` alone (the Typer app).
(b) `sluice apps` against a real redis-server, with a config of 1 app and of --apps apps
    (git sources, a deployment each, their views cached as the workers leave them; the
    first 100 shown, 200 columns wide); target <= 4x. The config was written a minute before
    and read once by `sluice apps` (which keeps its summary, cli/fleet_summary.py), as a
    config is between two edits; beside it the long way: the same with no summary kept (a
    cache folder that cannot be: /dev/null), as after each edit of the config.
(c) What the long way stands on: a bare Typer app of one command (its `--help`, and the
    command run: Typer converts values with pydantic), `import redis`, the two together (a
    bare Typer command importing redis), and in process: load_config of --apps apps, and the
    apps table of the first 100 as text.
Sluice's modules run from bytecode, as an installed package's do (pip compiles them when it
installs; an editable install's are written at the first run): the bytecode is compiled
first (checked against the source's hash at each import, so an edit is never missed),
since an environment with PYTHONDONTWRITEBYTECODE would otherwise compile every module from
source at every start, which `python -c pass` never does.
Everything else lives in a temp dir, removed at the end.
"""
from __future__ import annotations

import argparse
import compileall
import os
import py_compile
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from common import ROOT, best, ms, results_table, verdict
from rich.console import Console

from orchestrator.config.settings import load_config
from orchestrator.core import events as ev
from orchestrator.core.event_log import ANY_VERSION
from orchestrator.runtime.embedded_redis import start_redis
from orchestrator.runtime.processes import terminate
from orchestrator.runtime.services import Services

TARGET = 4
console = Console(width=150)
SLUICE = Path(sys.executable).with_name("sluice")

# Typer as Sluice uses it, without Sluice: one command, one option, its docstring
BARE_TYPER = """
import typer
cli = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)
@cli.command()
def apps(limit: int = typer.Option(100, "--limit", help="show the first N")):
    \"\"\"The configured apps.\"\"\"
@cli.command()
def other():
    \"\"\"Another command, so that the app has commands to list.\"\"\"
cli()
"""
BARE_TYPER_REDIS = BARE_TYPER.replace('"""The configured apps."""', '"""The configured apps."""\n    import redis')


def measure(args) -> list[tuple[str, str, str, str]]:
    apps, runs = getattr(args, "apps", 1000), getattr(args, "runs", 15)
    compileall.compile_dir(ROOT / "orchestrator", quiet=1,
                           invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    with tempfile.TemporaryDirectory(prefix="sluice-scale-cli-") as tmp:
        root = Path(tmp)
        proc, url = start_redis(root / "redis")
        try:
            one, many = seeded(root, url, 1), seeded(root, url, apps)
            for cfg in (one, many):
                written_a_minute_ago(cfg)
                subprocess.run([*sluice(), "--config", str(cfg), "apps"], check=True, stdout=subprocess.DEVNULL,
                               env={**os.environ, "XDG_CACHE_HOME": str(root / "cache")})
            commands = {
                "pass": [sys.executable, "-c", "pass"],
                "import": [sys.executable, "-c", "import orchestrator.cli.main"],
                "help": [*sluice(), "--help"],
                "apps 1": [*sluice(), "--config", str(one), "apps"],
                "apps N": [*sluice(), "--config", str(many), "apps"],
                "apps N long": ["env", "XDG_CACHE_HOME=/dev/null", *sluice(), "--config", str(many), "apps"],
                "typer help": [sys.executable, "-c", BARE_TYPER, "--help"],
                "typer run": [sys.executable, "-c", BARE_TYPER, "apps", "--limit", "5"],
                "import redis": [sys.executable, "-c", "import redis"],
                "typer redis": [sys.executable, "-c", BARE_TYPER_REDIS, "apps", "--limit", "5"],
            }
            cold = medians(commands, runs, {"XDG_CACHE_HOME": str(root / "cache")})
            config = best(lambda: load_config(many), 5)
            config_one = best(lambda: load_config(one), 5)
            shown = apps_table(many)
            table = best(shown, 5)
        finally:
            terminate(proc)
    bare = cold["pass"]

    def row(what: str, key: str, target: bool = True) -> tuple[str, str, str, str]:
        ratio = cold[key] / bare
        goal = f"ratio {ratio:.1f} <= {TARGET} {verdict(ratio <= TARGET)}" if target else f"ratio {ratio:.1f}"
        return what, ms(cold[key]), f"python -c pass {ms(bare)}", goal
    return [
        row("`import orchestrator.cli.main`: the Typer app, its commands", "import", target=False),
        row("`sluice --help` cold", "help"),
        row("`sluice apps` cold, 1 app", "apps 1"),
        row(f"`sluice apps` cold, {apps:,} apps (the first 100 shown)", "apps N"),
        row(f"`sluice apps` the long way (config edited since), {apps:,} apps", "apps N long", target=False),
        row("a bare Typer app's --help in Rich panels (Typer's default)", "typer help", target=False),
        row("floor: a bare Typer app running a command (pydantic)", "typer run", target=False),
        row("floor: `import redis` (`sluice apps` needs it)", "import redis", target=False),
        row("floor: a bare Typer command importing redis", "typer redis", target=False),
        (f"load_config in process, {apps:,} apps", ms(config), f"1 app {ms(config_one)}", "-"),
        ("the apps table of 100 apps as text (in process, warm)", ms(table), f"python -c pass {ms(bare)}",
         f"ratio {table / bare:.1f}"),
    ]


def apps_table(cfg: Path) -> Callable[[], str]:
    """Printing the table `sluice apps` prints for the config's first 100 apps."""
    from orchestrator.cli.fleet_summary import summary_of
    from orchestrator.cli.quick_apps import apps_text
    from orchestrator.observe.fleet_pages import CLI_PAGE, fleet_page
    config = load_config(cfg)
    page = fleet_page(config.apps, CLI_PAGE)
    views = dict(zip(page.names, Services.build(config).projections.apps(page.names)))
    summary = summary_of(config)
    return lambda: apps_text(summary, page, views, CLI_PAGE)


def written_a_minute_ago(path: Path) -> None:
    past = time.time() - 60
    os.utime(path, (past, past))


def sluice() -> list[str]:
    return [str(SLUICE)] if SLUICE.exists() else [sys.executable, "-m", "orchestrator.cli"]


def seeded(root: Path, url: str, apps: int) -> Path:
    """A config of `apps` git apps, each with one successful deployment recorded and its
    view cached."""
    names = [f"app{apps}-{i:05}" for i in range(apps)]
    cfg = root / f"sluice-{apps}.yaml"
    cfg.write_text(yaml.safe_dump({
        "data_dir": str(root / "data"), "redis_url": url,
        "apps": {name: {"target": str(root / "sites" / name),
                        "source": {"type": "git", "url": str(root / "repos" / name)}} for name in names}}))
    services = Services.build(load_config(cfg))
    for name in names:
        services.store.append(name, deployed(name), ANY_VERSION)
    services.projections.apps(names)
    return cfg


def deployed(app: str) -> list[ev.Event]:
    dep, at, revision = f"{app}-d1", 1_700_000_000.0, f"{abs(hash(app)):040x}"[:40]
    return [ev.ChangeDetected(app=app, at=at, revision=revision, trigger="poll"),
            ev.DeploymentQueued(app=app, at=at, deployment_id=dep, revision=revision, trigger="poll"),
            ev.DeploymentStarted(app=app, at=at + 1, deployment_id=dep, worker="w"),
            ev.SnapshotBuilt(app=app, at=at + 2, deployment_id=dep, snapshot=f"{1:064x}", files=3, bytes=9,
                             blobs_added=1, blobs_reused=2),
            ev.DeploymentSucceeded(app=app, at=at + 3, deployment_id=dep, snapshot=f"{1:064x}",
                                   release=f"/r/{dep}")]


def medians(commands: dict[str, list[str]], runs: int, env_more: dict[str, str]) -> dict[str, float]:
    env = {**os.environ, "COLUMNS": "200", **env_more}
    times: dict[str, list[float]] = {key: [] for key in commands}
    for _ in range(runs):
        for key, cmd in commands.items():
            started = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=ROOT, env=env)
            times[key].append(time.perf_counter() - started)
    return {key: statistics.median(values) for key, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=15)
    rows = measure(parser.parse_args())
    console.print(results_table("Fast CLI (issue 16)", ("measure", "Sluice", "baseline (same run)", "target"),
                                rows))


if __name__ == "__main__":
    sys.exit(main())
