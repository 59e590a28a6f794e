"""Flower, Celery's monitor, against Sluice's Celery app as docs/operating.md runs it:
`CELERY_BROKER_URL=REDIS_URL celery -A workers.celery_app flower` (no Sluice config needed;
the URL, password included, in the environment rather than in arguments any user sees)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from orchestrator.runtime.embedded_redis import free_port
from orchestrator.runtime.processes import terminate
from tests.helpers import wait_for

pytest.importorskip("flower", reason="flower is not installed (pip install '.[flower]')")
CELERY = Path(sys.executable).with_name("celery")


@pytest.fixture
def flower(redis_url, celery_worker, tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("SLUICE_CONFIG", "SLUICE_REDIS_URL")}
    log = open(tmp_path / "flower.log", "w")
    proc = subprocess.Popen(
        [str(CELERY), "-A", "workers.celery_app", "flower", f"--port={port}", "--address=127.0.0.1"],
        cwd=tmp_path, env={**env, "CELERY_BROKER_URL": redis_url, "FLOWER_UNAUTHENTICATED_API": "true"},
        stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: proc.poll() is not None or _answers(base + "/healthcheck"),
                 timeout=30, what="Flower to start")
        assert proc.poll() is None, (tmp_path / "flower.log").read_text()
        yield base
    finally:
        terminate(proc)
        log.close()


def test_flower_shows_the_deploy_worker_with_its_queue_and_task(flower, celery_worker):
    def worker():
        workers = httpx.get(flower + "/api/workers?refresh=1", timeout=20).json()
        return workers.get(next((n for n in workers if n.startswith(f"sluice-{celery_worker.pid}@")), ""))

    seen = wait_for(worker, timeout=30, interval=0.5, what="Flower to see the worker")

    assert [q["name"] for q in seen["active_queues"]] == ["deploy"]
    assert "sluice.deploy" in seen["registered"]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).text == "OK"
    except httpx.HTTPError:
        return False
