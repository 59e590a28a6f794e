"""The worker's housekeeping after a deployment, seen from Redis: a real redis-server and
worker, every command recorded by MONITOR."""
from __future__ import annotations

import threading

from tests.helpers import FUNCTION_APP
from tests.integration.flow import sync_and_wait, wait_until_let_go


def recorded_commands(client, stop: threading.Event, into: list[str]) -> threading.Thread:
    def record():
        with client.monitor() as monitor:
            for line in monitor.listen():
                into.append(line["command"])
                if stop.is_set() and "PING" in line["command"]:
                    return
    thread = threading.Thread(target=record, daemon=True)
    thread.start()
    return thread


def test_the_worker_says_it_cleans_up_before_it_lets_go_of_the_apps_lease(workspace):
    """Whoever waits for an app to be left alone (a test, an operator's script) looks for the
    lease or the cleaning key: there must be no moment with neither while the worker still
    works on the app."""
    _, services = workspace.app_with(FUNCTION_APP)
    commands: list[str] = []
    stop = threading.Event()
    recorder = recorded_commands(services.redis, stop, commands)
    services.redis.ping()

    sync_and_wait(services, "hello")
    wait_until_let_go(services, "hello")
    stop.set()
    services.redis.ping()
    recorder.join(10)

    marked = next(i for i, c in enumerate(commands) if c.startswith("SET sluice:cleaning:hello"))
    let_go = next(i for i, c in enumerate(commands) if c == "DEL sluice:lease:hello")
    assert marked < let_go
