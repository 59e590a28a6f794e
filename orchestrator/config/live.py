"""The config a long-running process works from: read once, read again when it may have
changed — the file's (st_mtime_ns, st_size, st_ino) or an environment variable the last read
looked at (SLUICE_*, each ${NAME}) — so a task costs a stat, not a parse of every app.

A read that fails keeps the last good config (one log line per failing version of the file,
not one per task); a process that never had a good config raises the ConfigError each time,
as a fresh read would.

A file written less than RACY_SECONDS before it was read is read again at every look until
that no longer holds (config/stamps.py: "racy git").
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from orchestrator.config.settings import SluiceConfig, config_file, load_config
from orchestrator.config.stamps import ReadKeys, Stamp, file_stamp
from orchestrator.core.errors import ConfigError

log = logging.getLogger("sluice.config")


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
        return self._seen is not None and self._seen.holds(path, self.env, self.stat, self._seen_at)

    def _read(self, path: Path) -> SluiceConfig:
        env, now, file = ReadKeys(self.env), self.clock(), file_stamp(path, self.stat)
        try:
            config = self.load(path, env)
        except ConfigError as exc:
            self._seen = Stamp.of(path, file, env)
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
        self._good, self._seen, self._seen_at, self._reported = config, Stamp.of(path, file, env), now, None
        return config
