"""The `sluice` command: thin; it parses, calls the packages below it and presents.

`main` is the entry point: `sluice apps` goes the short way when it can (cli/quick_apps.py),
everything else through `cli`, the Typer app (its commands registered by importing
cli/main.py, and only when asked for: Typer costs more than the interpreter's start).
"""
from __future__ import annotations

import sys
from typing import Any


def main() -> None:
    if "apps" in sys.argv[1:]:      # no other command pays for the short way's imports
        from orchestrator.cli.quick_apps import shown
        if shown(sys.argv[1:]):
            return
    from orchestrator.cli.main import main as typer_main
    typer_main()


def __getattr__(name: str) -> Any:
    if name == "cli":
        from orchestrator.cli.main import cli
        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["cli", "main"]
