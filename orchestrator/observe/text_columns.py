"""Rows of text in left-aligned columns two spaces apart, as kubectl and docker print theirs,
made to fit the terminal: when the natural widths are too wide, the column with the most
to give narrows first, down to its least width, and its cells wrap (words, then characters).
A column whose least width is its natural one (ids, names people copy) never wraps."""
from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterable, Sequence

GAP = "  "
LEAST = 4           # a wrapping column's narrowest: a word or two a line
FALLBACK = 80       # a pipe's width, as Rich and Click take it


def columns(headers: Sequence[str], rows: Iterable[Sequence[str]], width: int | None = None,
            least: Sequence[int | None] | None = None) -> str:
    """`least[i]`: column i's narrowest (None: never narrower than its widest line)."""
    table = [[cell.split("\n") for cell in row] for row in [headers, *rows]]
    natural = [max(len(line) for row in table for line in row[i]) for i in range(len(headers))]
    floors = [n if at is None else min(n, at) for n, at in zip(natural, least or [LEAST] * len(headers))]
    widths = natural if width is None else _fitted(natural, floors, width)
    lines = []
    for row in table:
        cells = [_wrapped(cell, w) if w < n else cell for cell, w, n in zip(row, widths, natural)]
        for k in range(max(len(cell) for cell in cells)):
            lines.append(GAP.join((cell[k] if k < len(cell) else "").ljust(w)
                                  for cell, w in zip(cells, widths)).rstrip())
    return "\n".join(lines)


def terminal_width() -> int:
    """$COLUMNS, else the terminal's, else FALLBACK (a pipe)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit():
        return int(columns)
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError):
        return FALLBACK


def _fitted(natural: list[int], floors: list[int], width: int) -> list[int]:
    widths = list(natural)
    excess = sum(widths) + len(GAP) * (len(widths) - 1) - width
    while excess > 0:
        widest = max(range(len(widths)), key=lambda i: widths[i] - floors[i])
        if widths[widest] <= floors[widest]:
            break       # as narrow as it goes: the rest overflows
        widths[widest] -= 1
        excess -= 1
    return widths


def _wrapped(cell: list[str], width: int) -> list[str]:
    return [part for line in cell
            for part in (textwrap.wrap(line, width, break_on_hyphens=False) or [""])]
