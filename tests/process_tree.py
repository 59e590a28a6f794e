"""Processes as /proc shows them, for tests and benches that check what `sluice up` runs and
leaves behind: a process's children, all its descendants, whether one still runs."""
from __future__ import annotations

from pathlib import Path


def children_of(pid: int) -> dict[int, str]:
    """pid -> command line of the processes whose parent is `pid`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, ValueError, IndexError):      # gone meanwhile
                pass
    return found


def descendants_of(pid: int) -> set[int]:
    below = set(children_of(pid))
    for child in list(below):
        below |= descendants_of(child)
    return below


def alive(pid: int) -> bool:
    """Running (a zombie is not: whether its parent reaps it is asked apart, of `sluice up`
    only, since an orphan's is whatever PID 1 is here)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
