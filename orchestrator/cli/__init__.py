"""The `sluice` command: thin; it parses, calls the packages below it and presents.

`cli` is the Typer app (its commands registered by importing main); `main` the entry point.
"""
from orchestrator.cli.main import cli, main

__all__ = ["cli", "main"]
