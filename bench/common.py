"""What every benchmark here shares: git with an identity, waiting, and how figures print."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
GIT_ENV = {"GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
           "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}


def run(cmd: list[str], cwd: Path | None = None, env: dict | None = None) -> str:
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}).stdout.strip()


def git(repo: Path, *args: str) -> str:
    return run(["git", *args], repo, GIT_ENV)


def wait(predicate, interval: float, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
    return value


def ms(s: float) -> str:
    return f"{s * 1000:.{2 if s < 0.01 else 1 if s < 0.1 else 0}f} ms"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def results_table(title: str, columns: tuple[str, ...], rows: list[tuple]) -> Table:
    """Measures left, figures right-aligned beside their baselines and targets."""
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="left" if col == "measure" else "right")
    for row in rows:
        table.add_row(*row)
    return table


def verdict(ok: bool) -> str:
    return "[green]PASS[/]" if ok else "[red]FAIL[/]"
