"""A config file broken while a worker runs: the worker reads it once per process and again
when it changes (orchestrator/config/live.py), so it goes on deploying with the last good
config and says once in its log why; a worker that never had a good config retries each task
until the file is fixed. Each test has its own redis-server and a worker of concurrency 1."""
from __future__ import annotations

import pytest

from orchestrator.config.settings import load_config
from orchestrator.deploying.dispatch import request_deployment
from orchestrator.runtime.services import Services
from tests.helpers import git_app, wait_for, write_config
from tests.integration.flow import deploy_messages, tree, wait_until_ended

pytestmark = pytest.mark.faults
BROKEN = "apps: {hello: {target: 1, colour: red}}\n"
SAYS = "working from the last good one"


@pytest.mark.timeout(120)
def test_a_config_broken_while_the_worker_runs_keeps_it_deploying_with_the_last_good_one(rig_factory):
    rig = rig_factory()
    repo = rig.repo()
    repo.commit({"index.html": "v1\n"})
    services = rig.configure({"hello": git_app(repo, rig.target("hello"), layout="site")})
    worker = rig.start_worker()
    rig.config_path.write_text(BROKEN)

    for version in ("v2", "v3"):
        revision = repo.commit({"index.html": f"{version}\n"})
        queued = request_deployment(services, "hello", revision, "manual")
        d = wait_until_ended(services, "hello", queued.deployment_id, timeout=60)
        assert d.status == "success", (d.message, rig.workers_state())
        assert tree(rig.target("hello")) == {"index.html": f"{version}\n"}

    said = [line for line in worker.log_path.read_text().splitlines() if SAYS in line]
    assert len(said) == 1, rig.workers_state()
    assert str(rig.config_path) in said[0] and "ERROR" in said[0]
    assert "apps.hello.colour: unknown key" in worker.log_path.read_text()


@pytest.mark.timeout(120)
def test_a_worker_that_never_had_a_good_config_retries_a_task_until_the_file_is_fixed(rig_factory):
    rig = rig_factory()
    repo = rig.repo()
    revision = repo.commit({"index.html": "v1\n"})
    good = {"hello": git_app(repo, rig.target("hello"), layout="site")}
    # the test's own view of the deployments; the worker's file is broken from its start
    services = Services.build(load_config(write_config(rig.root / "good.yaml", rig.data_dir, good,
                                                       rig.redis_url)))
    rig.config_path.write_text(BROKEN)
    rig.start_worker(plain_celery=True)     # `sluice worker` would refuse to start at all

    queued = request_deployment(services, "hello", revision, "manual")
    # Celery's retry (an ETA) shows the worker took the task and could not read the config
    wait_for(lambda: any(h.get("eta") for h in deploy_messages(services, queued.deployment_id)),
             what="the worker to retry the task after the broken config")
    assert services.projections.app("hello").deployments[queued.deployment_id].status == "pending"
    rig.configure(good)

    assert wait_until_ended(services, "hello", queued.deployment_id, timeout=60).status == "success"
