"""`sluice --help` in Click's plain layout, its commands listed with their whole summary.

Click cuts a command's summary to what fits one line at the terminal's width ("Run
everything: embedded Redis (unless redis_url is set),..."); the list wraps it instead, as
Rich's panels did, so that plain help says all that they said.
"""
from __future__ import annotations

import typer.core


def summary(help_text: str | None) -> str:
    """The first paragraph of a command's help, on one line."""
    return " ".join((help_text or "").split("\n\n")[0].split())


class WholeSummaries(typer.core.TyperGroup):
    def format_commands(self, ctx, formatter) -> None:
        commands = ((name, self.get_command(ctx, name)) for name in self.list_commands(ctx))
        rows = [(name, cmd.short_help or summary(cmd.help))
                for name, cmd in commands if cmd is not None and not cmd.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
