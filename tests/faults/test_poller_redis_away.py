"""Redis goes away while a poller checks a source: once Redis is back, the poller checks the
source again at its next round, not after the claim it took on it times out (120 s).

The source is reached over ssh to tests/servers/fake_ssh.py, held while a `hold` file lies
beside the key, so Redis is surely stopped in the middle of the check. The poller's clock
is a fake one that does not move: a claim still in force shows as a round that checks
nothing.
"""
from __future__ import annotations

import threading

import pytest
import redis

from orchestrator.config.settings import load_config
from orchestrator.core.clock import FakeClock
from orchestrator.runtime.services import Services
from orchestrator.triggers.poller import Poller
from tests.helpers import wait_for

pytestmark = pytest.mark.faults

APP = "polled"


@pytest.mark.timeout(120)
def test_a_source_whose_check_redis_failed_is_checked_at_the_first_round_redis_answers(
        rig_factory):
    rig = rig_factory(visibility_timeout=300.0)
    repo = rig.repo()
    repo.commit({"index.html": "<h1>polled</h1>\n"})
    key = rig.root / "keys" / "deploy_ed25519"
    key.parent.mkdir()
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a real key\n")
    key.chmod(0o600)
    rig.configure({APP: {"layout": "site", "target": str(rig.target(APP)), "source": {
        "type": "git", "url": f"ssh://git@ssh.sluice.test{repo.path}", "ssh_key": str(key),
        "poll_interval": "1h"}}})
    services = Services.build(load_config(rig.config_path), FakeClock())
    poller = Poller(services)
    poller.register()
    hold = key.parent / "hold"
    hold.touch()
    failed: list[BaseException] = []

    def first_round() -> None:
        try:
            poller.tick()
        except redis.RedisError as exc:
            failed.append(exc)

    checking = threading.Thread(target=first_round)
    checking.start()
    wait_for(lambda: (key.parent / "ssh.log").exists(), timeout=60,
             what="the head check to reach the source")
    rig.stop_redis()
    hold.unlink()
    checking.join(60)
    assert failed, "the check went through with Redis stopped"
    rig.restart_redis()

    results = wait_for(lambda: poller.tick(), timeout=30, what="a round that checks the source")

    assert [(r.app, r.error) for r in results] == [(APP, None)]
    assert results[0].queued is not None and results[0].queued.new
