"""What a read of the config depended on — the file's (st_mtime_ns, st_size, st_ino) and
each environment variable the read looked at (SLUICE_*, each ${NAME}), set or not — so that
a reader can tell, at the cost of a stat, whether a read it kept still holds.

File times come from a clock coarser than a nanosecond: a file written again within a few
milliseconds of the last write, same size, keeps its mtime. So a read of a file written less
than RACY_SECONDS before it is never trusted again, as git does with its index ("racy git").
No pydantic or YAML here: `sluice apps` checks its kept summary of the config with it.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

RACY_SECONDS = 2.0      # FAT's mtime granularity, the coarsest a config may live on

FileStamp = tuple[int, int, int]    # (st_mtime_ns, st_size, st_ino)


class ReadKeys(Mapping[str, str]):
    """An environment that remembers which variables were looked at, set or not."""

    def __init__(self, env: Mapping[str, str]):
        self.env, self.read = env, set[str]()

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return self.env[name]

    def __contains__(self, name: object) -> bool:
        self.read.add(str(name))
        return name in self.env

    def __iter__(self) -> Iterator[str]:
        return iter(self.env)

    def __len__(self) -> int:
        return len(self.env)


def file_stamp(path: Path, stat: Callable[[Path], os.stat_result] = os.stat) -> FileStamp | None:
    """None: no file there (a read of it failed, and fails again until one appears)."""
    try:
        st = stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


@dataclass(frozen=True)
class Stamp:
    """What a read of the config depended on."""
    path: Path
    file: FileStamp | None
    env: tuple[tuple[str, str | None], ...]     # each variable the read looked at, as it was

    @staticmethod
    def of(path: Path, file: FileStamp | None, env: ReadKeys) -> Stamp:
        return Stamp(path, file, tuple((name, env.env.get(name)) for name in sorted(env.read)))

    def holds(self, path: Path, env: Mapping[str, str | None], stat: Callable[[Path], os.stat_result],
              read_at: float) -> bool:
        """Whether a read at `read_at` of `path` in `env` would give what this one gave."""
        return (self.path == path and self.file == file_stamp(path, stat)
                and all(env.get(name) == value for name, value in self.env)
                and not self.racy(read_at))

    def racy(self, read_at: float) -> bool:
        """Whether a write after the read could have left the same stamp."""
        return self.file is not None and read_at - self.file[0] / 1e9 < RACY_SECONDS
