"""The embedded Redis of `sluice up` keeps its doors shut: a password no one else can read,
no command that writes files or loads code, data files for its owner only."""
from __future__ import annotations

import stat
from pathlib import Path

import pytest
import redis

from orchestrator.core.errors import ConfigError
from orchestrator.runtime.embedded_redis import start_redis, wait_for_redis
from orchestrator.runtime.processes import terminate


@pytest.fixture
def embedded(tmp_path):
    proc, url = start_redis(tmp_path / "redis")
    yield proc, url, tmp_path / "redis"
    terminate(proc)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def test_the_embedded_redis_refuses_a_connection_without_the_password(embedded):
    proc, url, _ = embedded

    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=_port(url)).set("sluice:credentials:hello", "mine")
    assert redis.Redis.from_url(url).ping()


def test_waiting_for_a_redis_that_refuses_the_password_is_a_config_error_without_it(embedded):
    proc, url, _ = embedded
    wrong = url.replace("://:", "://:not-", 1)

    with pytest.raises(ConfigError, match="refused the password") as refused:
        wait_for_redis(wrong, timeout=60)
    assert "not-" not in str(refused.value) and f"127.0.0.1:{_port(url)}" in str(refused.value)


@pytest.mark.parametrize("command", [("CONFIG", "SET", "dir", "/tmp"), ("CONFIG", "GET", "dir"),
                                     ("DEBUG", "SLEEP", "0"), ("MODULE", "LIST")])
def test_the_embedded_redis_has_no_command_that_writes_files_or_loads_code(embedded, command):
    proc, url, _ = embedded

    with pytest.raises(redis.ResponseError, match="unknown command"):
        redis.Redis.from_url(url).execute_command(*command)


def test_the_embedded_redis_password_is_in_a_file_for_its_owner_only_never_in_its_arguments(embedded):
    proc, url, folder = embedded
    password = (folder / "password").read_text().strip()

    assert len(password) >= 32 and f":{password}@" in url
    assert _mode(folder / "password") == 0o600
    assert password.encode() not in Path(f"/proc/{proc.pid}/cmdline").read_bytes()


def test_the_embedded_redis_data_are_for_its_owner_only_even_those_an_older_run_left_open(tmp_path):
    folder = tmp_path / "redis"
    proc, url = start_redis(folder)
    redis.Redis.from_url(url).set("sluice:credentials:hello", "a hash")
    terminate(proc)
    folder.chmod(0o755)                         # as an older Sluice left them
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)

    proc, url = start_redis(folder)
    try:
        redis.Redis.from_url(url).set("written", "again")
        entries = list(folder.rglob("*"))
        assert _mode(folder) == 0o700
        assert {p.name for p in entries} >= {"appendonly.aof", "redis.log", "password"}
        assert {p.name: _mode(p) for p in entries} == {
            p.name: 0o700 if p.is_dir() else 0o600 for p in entries}
        assert redis.Redis.from_url(url).get("sluice:credentials:hello") == b"a hash"
    finally:
        terminate(proc)
