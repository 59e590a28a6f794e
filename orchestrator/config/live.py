"""The config a long-running process works from: read once, read again when it may have
changed — the file's (st_mtime_ns, st_size, st_ino) or an environment variable the last read
looked at (SLUICE_*, each ${NAME}) — so a task costs a stat, not a parse of every app.

A read that fails keeps the last good config (one log line per failing version of the file,
not one per task); a process that never had a good config raises the ConfigError each time,
as a fresh read would.

File times come from a clock coarser than a nanosecond: a file written again within a few
milliseconds of the last write, same size, keeps its mtime. So a file written less than
RACY_SECONDS before it was read is read again at every look until that no longer holds, as
git does with its index ("racy git").
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from orchestrator.config.settings import SluiceConfig, config_file, load_config
from orchestrator.core.errors import ConfigError

log = logging.getLogger("sluice.config")
RACY_SECONDS = 2.0      # FAT's mtime granularity, the coarsest a config may live on


@dataclass(frozen=True)
class Stamp:
    """What a read of the config depended on."""
    path: Path
    file: tuple[int, int, int] | None           # (st_mtime_ns, st_size, st_ino); None: no file
    env: tuple[tuple[str, str | None], ...]     # each variable the read looked at, as it was


class _ReadKeys(Mapping[str, str]):
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


class LiveConfig:
    """`current()`: the config as the file (at `path`, else $SLUICE_CONFIG's) says now.
    `stat`, `clock` (wall-clock seconds, as file times are) and `load` are injected for tests."""

    def __init__(self, path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None,
                 stat: Callable[[Path], os.stat_result] = os.stat, clock: Callable[[], float] = time.time,
                 load: Callable[..., SluiceConfig] = load_config):
        self.path = Path(path) if path else None
        self.env = os.environ if env is None else env
        self.stat, self.clock, self.load = stat, clock, load
        self._good: SluiceConfig | None = None
        self._seen: Stamp | None = None         # the last version read, good or not
        self._seen_at = 0.0
        self._reported: Stamp | None = None     # the last failing version logged
        self._lock = threading.Lock()           # the worker's reaper thread shares it

    def current(self) -> SluiceConfig:
        with self._lock:
            path = self.path or config_file(self.env)
            if self._good is not None and self._unchanged(path):
                return self._good
            return self._read(path)

    def _unchanged(self, path: Path) -> bool:
        seen = self._seen
        return (seen is not None and seen.path == path and seen.file == self._file(path)
                and all(self.env.get(name) == value for name, value in seen.env)
                and not _racy(seen, self._seen_at))

    def _read(self, path: Path) -> SluiceConfig:
        env, now, file = _ReadKeys(self.env), self.clock(), self._file(path)
        try:
            config = self.load(path, env)
        except ConfigError as exc:
            self._seen = self._stamp(path, file, env)
            self._seen_at = now
            if self._good is None:
                raise
            if self._seen != self._reported:
                self._reported = self._seen
                log.error("the config cannot be read again; working from the last good one "
                          "until it is fixed: %s", exc)
            return self._good
        if self._reported is not None:
            log.info("%s read again: the config is good", path)
        self._good, self._seen, self._seen_at, self._reported = config, self._stamp(path, file, env), now, None
        return config

    def _file(self, path: Path) -> tuple[int, int, int] | None:
        try:
            st = self.stat(path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _stamp(self, path: Path, file: tuple[int, int, int] | None, env: _ReadKeys) -> Stamp:
        return Stamp(path, file, tuple((name, self.env.get(name)) for name in sorted(env.read)))


def _racy(stamp: Stamp, read_at: float) -> bool:
    """Whether a write after the read could have left the same stamp (see the docstring)."""
    return stamp.file is not None and read_at - stamp.file[0] / 1e9 < RACY_SECONDS
