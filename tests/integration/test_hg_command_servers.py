"""Mercurial command servers kept between commands (sources/hg_server.py): real `hg serve
--cmdserver pipe` processes on a real repository, a clock of the test's own."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

from orchestrator.core.errors import TransientError
from orchestrator.sources.hg import hg_executable
from orchestrator.sources.hg_server import Client, CommandServers
from tests.helpers import wait_for
from tests.process_tree import alive
from tests.servers.hg_serve import HgRepo

LOG = [b"log", b"-r", b".", b"-T", b"{node}"]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def repo(tmp_path) -> HgRepo:
    repo = HgRepo(tmp_path / "repo")
    repo.commit({"index.html": "v1"})
    return repo


@pytest.fixture
def pool():
    servers = CommandServers(limit=2, idle=60, clock=Clock())
    yield servers
    servers.close_all()


def starter(repo: HgRepo, started: list[Client]):
    def start() -> Client:
        client = Client(str(repo.path), hg_executable(), {"HGRCPATH": ""}).open()
        started.append(client)
        return client
    return start


def pid_of(client: Client) -> int:
    return client.server.pid


def test_a_server_answers_every_command_of_its_key_without_another_process(pool, repo):
    started: list[Client] = []

    replies = [pool.run("repo", starter(repo, started), LOG, "hg log") for _ in range(3)]

    assert {r.out.decode() for r in replies} == {repo.head()} and {r.status for r in replies} == {0}
    assert len(started) == 1 and pool.pids() == [pid_of(started[0])]


def test_a_failing_command_returns_its_status_and_stderr_and_keeps_the_server(pool, repo):
    started: list[Client] = []

    reply = pool.run("repo", starter(repo, started), [b"log", b"-r", b"nosuchrevision"], "hg log")

    assert reply.status != 0 and b"unknown revision 'nosuchrevision'" in reply.err
    assert pool.pids() == [pid_of(started[0])]


def test_at_most_limit_servers_wait_and_the_least_recently_used_is_closed(pool, repo):
    started: list[Client] = []
    start = starter(repo, started)
    pool.run("a", start, LOG, "hg log")
    first = pid_of(started[0])

    pool.run("b", start, LOG, "hg log")
    pool.run("a", start, LOG, "hg log")         # a used last: b is now the oldest
    pool.run("c", start, LOG, "hg log")

    assert len(started) == 3 and len(pool.pids()) == 2
    assert first in pool.pids() and all(alive(pid) for pid in pool.pids())
    assert started[1].server is None            # b's: closed, its process waited for


def test_a_server_idle_longer_than_the_timeout_is_closed(pool, repo):
    started: list[Client] = []
    start = starter(repo, started)
    pool.run("old", start, LOG, "hg log")
    old = pid_of(started[0])
    pool.clock.now += 50
    pool.run("recent", start, LOG, "hg log")
    pool.clock.now += 20                        # old idle 70 s, recent 20 s: the limit is 60

    assert pool.reap() == 1

    assert not alive(old) and pool.pids() == [pid_of(started[1])]


def test_a_killed_server_is_replaced_before_the_next_command(pool, repo):
    started: list[Client] = []
    start = starter(repo, started)
    pool.run("repo", start, LOG, "hg log")
    os.kill(pid_of(started[0]), signal.SIGKILL)
    wait_for(lambda: started[0].server.poll() is not None, what="the server to die")

    reply = pool.run("repo", start, LOG, "hg log")

    assert reply.out.decode() == repo.head() and len(started) == 2
    assert pool.pids() == [pid_of(started[1])]


def test_a_server_that_dies_during_a_command_is_replaced_and_the_command_sent_again(pool, repo):
    started: list[Client] = []
    start = starter(repo, started)

    def dies_at_once() -> Client:
        client = start()
        if len(started) == 1:
            os.kill(pid_of(client), signal.SIGKILL)
            client.server.wait()
        return client

    reply = pool.run("repo", dies_at_once, LOG, "hg log")

    assert reply.out.decode() == repo.head() and len(started) == 2


def test_a_server_that_keeps_dying_is_a_transient_error_naming_the_command(pool, repo):
    started: list[Client] = []
    start = starter(repo, started)

    def always_dies() -> Client:
        client = start()
        os.kill(pid_of(client), signal.SIGKILL)
        client.server.wait()
        return client

    with pytest.raises(TransientError, match="hg log repo: the hg command server stopped"):
        pool.run("repo", always_dies, LOG, "hg log repo")
    assert len(started) == 2 and pool.pids() == []


def test_a_server_that_cannot_start_is_a_transient_error(pool, tmp_path):
    broken = Client(str(tmp_path / "no-repository"), hg_executable(), {"HGRCPATH": ""})

    with pytest.raises(TransientError, match="hg log x: the hg command server did not start"):
        pool.run("x", broken.open, LOG, "hg log x")


def test_threads_of_one_process_each_get_a_server_of_their_own(repo):
    servers = CommandServers(limit=8, idle=60)
    started: list[Client] = []
    try:
        with ThreadPoolExecutor(4) as threads:
            replies = list(threads.map(lambda _: servers.run("repo", starter(repo, started), LOG, "hg log"),
                                       range(16)))
    finally:
        servers.close_all()
    assert {r.out.decode() for r in replies} == {repo.head()}
    assert 1 <= len(started) <= 4 and all(c.server is None for c in started)


def test_close_all_lets_the_servers_exit_of_themselves(pool, repo):
    started: list[Client] = []
    pool.run("repo", starter(repo, started), LOG, "hg log")
    proc = started[0].server

    pool.close_all()

    assert proc.returncode == 0 and pool.pids() == []


def test_a_forked_child_lets_go_of_its_parents_servers(pool, repo):
    started: list[Client] = []
    pool.run("repo", starter(repo, started), LOG, "hg log")
    proc = started[0].server
    read, write = os.pipe()
    child = os.fork()
    if child == 0:      # the child: a pool without its parent's servers, their pipes closed
        pool.forget_after_fork()
        os.write(write, str(pool.pids()).encode())
        signal.pause()
        os._exit(0)
    try:
        os.close(write)
        assert os.read(read, 100) == b"[]"
        # the child still runs: had it kept the server's stdin open, it would not end on close
        pool.close_all()
        assert proc.returncode == 0
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        os.close(read)


@pytest.mark.parametrize("how", ["exit", "SIGKILL"])
def test_servers_end_with_the_process_that_started_them(repo, how):
    script = textwrap.dedent(f"""
        import os, signal, sys
        from orchestrator.sources.hg import hg_executable
        from orchestrator.sources.hg_server import Client, servers
        start = lambda: Client({str(repo.path)!r}, hg_executable(), {{"HGRCPATH": ""}}).open()
        servers.run("repo", start, [b"root"], "hg root")
        print(servers.pids()[0], flush=True)
        if {how!r} == "SIGKILL":
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)

    server = int(proc.stdout.split()[0])
    wait_for(lambda: not alive(server), timeout=10, what="the command server to exit")
