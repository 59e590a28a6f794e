"""`sluice`'s entry point: options moved in front of the command, the commands registered,
and errors shown as one line with an exit code (2 for the configuration) instead of a trace."""
from __future__ import annotations

import sys

# registering the commands, in the order `sluice --help` lists them
# isort: off
from orchestrator.cli import running, inspecting, operating, access  # noqa: F401
# isort: on
from orchestrator.cli.app import cli, err
from orchestrator.core.errors import ConfigError, SluiceError


def _fail(label: str, message: str, code: int) -> None:
    err.print(f"{label}:", style="bold red", end=" ")
    err.print(message, markup=False, highlight=False)
    sys.exit(code)


# The options of every command (the callback's), taken after the command too, as kubectl and
# flux take theirs: `sluice deployments hello -c prod.yaml`. Typer only reads them before the
# command, so main() moves them there; no command may have an option of the same name.
GLOBAL_OPTIONS = ("--config", "-c", "--log-level", "--log-format")


def global_options_first(args: list[str]) -> list[str]:
    moved: list[str] = []
    rest: list[str] = []
    words = iter(args)
    for word in words:
        name = word.split("=", 1)[0] if word.startswith("--") else word[:2]
        if word == "--":                # what follows is arguments only
            return moved + rest + [word, *words]
        if name not in GLOBAL_OPTIONS:
            rest.append(word)
        elif word != name:              # --config=FILE, -cFILE
            moved.append(word)
        else:
            value = next(words, None)
            if value is None:           # left where it stands, for typer to refuse
                rest.append(word)
            else:
                moved += [word, value]
    return moved + rest


def main() -> None:
    try:
        cli(args=global_options_first(sys.argv[1:]))
    except ConfigError as exc:
        _fail("config error", str(exc), 2)
    except SluiceError as exc:
        _fail("error", str(exc), 1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if not _redis_unreachable(exc):
            raise
        _fail("error", f"cannot reach Redis: {exc}", 1)


def _redis_unreachable(exc: Exception) -> bool:
    """Without importing redis (a fifth of a second), which only the commands that talk to
    it do: a process that never imported it cannot have failed to reach it."""
    client = sys.modules.get("redis")
    return client is not None and isinstance(exc, client.ConnectionError)

