"""`sluice` imports what the command it runs uses: `--help` none of the clients, servers,
models and sources behind the commands, whose imports cost several times the interpreter's
own start (bench/scale_cli.py)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

# what only some commands use: Redis, Celery, the API's server, the sources' SDKs, the
# config's models (pydantic) and file format, the events and the services built on them
HEAVY = ("redis", "celery", "kombu", "fastapi", "starlette", "uvicorn", "httpx", "requests", "git",
         "dropbox", "msal", "mercurial", "hglib", "pyftpdlib", "prometheus_client", "jinja2",
         "pydantic", "yaml", "orchestrator.config.settings", "orchestrator.core.events",
         "orchestrator.runtime", "orchestrator.deploying", "orchestrator.api")

# runs `sluice ARGS` in this fresh interpreter, then lists the modules it imported
RUN_AND_LIST = """
import contextlib, io, json, sys
from orchestrator.cli import main
sys.argv = ["sluice", *sys.argv[1:]]
with contextlib.redirect_stdout(io.StringIO()) as shown:
    try:
        main()
    except SystemExit:
        pass
print(json.dumps({"shown": shown.getvalue(), "modules": sorted(sys.modules)}))
"""


def sluice_in_fresh_interpreter(*args: str) -> tuple[str, list[str]]:
    result = subprocess.run([sys.executable, "-c", RUN_AND_LIST, *args], capture_output=True,
                            text=True, timeout=60, check=True)
    ran = json.loads(result.stdout)
    return ran["shown"], ran["modules"]


def heavy_among(modules: list[str], heavy: tuple[str, ...] = HEAVY) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in heavy)]


def test_sluice_help_lists_the_commands_without_importing_what_they_use():
    shown, modules = sluice_in_fresh_interpreter("--help")

    assert "check-config" in shown and "deployments" in shown and "credentials" in shown
    assert heavy_among(modules) == []


@pytest.mark.parametrize("command", [("apps",), ("deployments",), ("up",), ("credentials", "set")])
def test_a_commands_help_shows_its_options_without_reading_the_config_or_importing_what_it_uses(command):
    shown, modules = sluice_in_fresh_interpreter(*command, "--help")

    assert "Usage: sluice " + " ".join(command) in " ".join(shown.split())
    # pydantic is Typer's: it converts the values of the options given before the command
    assert heavy_among(modules, tuple(h for h in HEAVY if h != "pydantic")) == []


def test_importing_the_cli_and_building_its_commands_imports_nothing_heavy():
    code = ("import json, sys, typer.main\nfrom orchestrator.cli import cli\n"
            "typer.main.get_command(cli)\nprint(json.dumps(sorted(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            check=True)

    assert heavy_among(json.loads(result.stdout)) == []


@pytest.mark.parametrize("command", [(), ("apps",), ("credentials",)])
def test_help_is_plain_text_and_does_not_import_rich(command):
    shown, modules = sluice_in_fresh_interpreter(*command, "--help")

    assert "Usage: sluice" in shown and "╭" not in shown
    assert heavy_among(modules, ("rich",)) == []


def test_sluice_help_lists_every_commands_whole_summary_not_cut_to_one_line():
    from typer.main import get_command

    from orchestrator.cli import cli
    from orchestrator.cli.plain_help import summary
    shown, _ = sluice_in_fresh_interpreter("--help")

    listed = " ".join(shown.split())
    for name, command in get_command(cli).commands.items():
        assert f"{name} {summary(command.help)}" in listed
