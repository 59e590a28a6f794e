"""What `sluice apps` needs of the config — where Redis is and each app's row facts — kept
after a full read, beside the stamp of that read (config/stamps.py), so that the next
`sluice apps` given the same file and environment shows the fleet without reading the YAML
or loading the config's models (pydantic): both cost more than the interpreter's start.

Kept under $XDG_CACHE_HOME/sluice (~/.cache/sluice), one file per config file, the folder
0700 and the files 0600. No value taken from the environment is written there: the Redis
URL is kept as the file wrote it (its ${NAME}s put in again at each use), the variables the
read looked at as salted hashes of their values; the apps' sources describe themselves
without credentials. A summary is used only while its stamp holds, its format and the code
that described the apps are the ones running, and it names a Redis the short way speaks;
anything else is read the long way, which keeps a new summary.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.config.env_refs import expanded
from orchestrator.config.stamps import Stamp, file_stamp
from orchestrator.core.files import write_whole
from orchestrator.observe.fleet_table import AppFacts

if TYPE_CHECKING:
    from orchestrator.config.settings import SluiceConfig

FORMAT = 2         # 2: each app's hosts
# the code that turns a config into a summary: an edit to it (or an upgrade) is a new summary
DESCRIBED_BY = [Path(__file__).parents[1] / "config" / name for name in ("settings.py", "sources.py")]


@dataclass(frozen=True)
class FleetSummary:
    redis_url: str | None       # as written, ${NAME}s and all; None: the embedded Redis's
    data_dir: str
    apps: list[AppFacts]

    def redis_address(self, env: Mapping[str, str]) -> str | None:
        """The URL to reach Redis at; None: not known without starting it (`sluice up`)."""
        try:
            if self.redis_url:
                return expanded(self.redis_url, env)
            return (Path(self.data_dir) / "redis" / "url").read_text().strip()
        except (KeyError, OSError):
            return None


def load_keeping(path: Path) -> tuple[SluiceConfig, FleetSummary]:
    """The config read the long way, and its summary, kept for the next short way."""
    from orchestrator.config.settings import load_config
    from orchestrator.config.stamps import ReadKeys
    env, read_at, file = ReadKeys(os.environ), time.time(), file_stamp(path)
    config = load_config(path, env)
    summary = summary_of(config)
    keep(summary, Stamp.of(path, file, env), read_at)
    return config, summary


def summary_of(config: SluiceConfig) -> FleetSummary:
    return FleetSummary(config.redis_url_as_written, str(config.data_dir),
                        [AppFacts(name, app.layout, app.source.describe(), str(app.target), tuple(app.hosts))
                         for name, app in config.apps.items()])


def keep(summary: FleetSummary, stamp: Stamp, read_at: float, folder: Path | None = None) -> None:
    """Best effort: a summary not kept is read the long way next time."""
    folder = folder or cache_folder()
    salt = secrets.token_hex(16)
    record = {"format": FORMAT, "code": _code_stamp(), "read_at": read_at, "salt": salt,
              "stamp": [str(stamp.path), stamp.file, [[n, _digest(salt, v)] for n, v in stamp.env]],
              "redis_url": summary.redis_url, "data_dir": summary.data_dir, "apps": summary.apps}
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_whole(_file_for(folder, stamp.path), json.dumps(record), mode=0o600)
    except OSError:
        pass


def kept(path: Path, env: Mapping[str, str], folder: Path | None = None,
         stat: Callable[[Path], os.stat_result] = os.stat) -> FleetSummary | None:
    """The summary kept for the config at `path` (resolved), if it still holds."""
    try:
        data = json.loads(_file_for(folder or cache_folder(), path).read_bytes())
        where, file, variables = data["stamp"]
        stamp = Stamp(Path(where), tuple(file) if file else None, tuple(map(tuple, variables)))
        digests = {name: _digest(data["salt"], env.get(name)) for name, _ in variables}
        if data["format"] != FORMAT or data["code"] != _code_stamp() or \
                not stamp.holds(path, digests, stat, data["read_at"]):
            return None
        return FleetSummary(data["redis_url"], data["data_dir"], [_facts(*app) for app in data["apps"]])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _facts(name: str, layout: str, source: str, target: str, hosts: list[str]) -> AppFacts:
    return AppFacts(name, layout, source, target, tuple(hosts))


def cache_folder(env: Mapping[str, str] = os.environ) -> Path:
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sluice"


def _file_for(folder: Path, config: Path) -> Path:
    return folder / f"apps-{hashlib.sha256(str(config).encode()).hexdigest()[:24]}.json"


def _digest(salt: str, value: str | None) -> str | None:
    return None if value is None else hashlib.sha256(f"{salt}{value}".encode()).hexdigest()


def _code_stamp() -> list:
    """As JSON gives it back: lists, not tuples."""
    return [list(stamp) if stamp else None for stamp in map(file_stamp, DESCRIBED_BY)]
