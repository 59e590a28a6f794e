import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from orchestrator.cli import cli
from orchestrator.config.settings import load_config

ROOT = Path(__file__).resolve().parents[2]
SLUICE_IMAGE = "sluice:latest"


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def sluice_services() -> dict:
    return {name: s for name, s in compose()["services"].items() if s.get("image") == SLUICE_IMAGE}


def host_services() -> dict:
    """The app's hosts' workers (issue 19): `sluice worker --host NAME`, by host name."""
    return {argv(s)[3]: s for s in sluice_services().values() if argv(s)[1:3] == ["worker", "--host"]}


def central_services() -> dict:
    return {name: s for name, s in sluice_services().items() if argv(s)[1:3] != ["worker", "--host"]}


TOKENS = {"SLUICE_API_TOKEN": "api-token-for-the-compose-test",
          "SLUICE_WORKER_TOKEN": "worker-token-for-the-compose-test"}


def compose_config():
    """config/compose.yaml as the services read it (the tokens from their environment)."""
    environment = compose()["x-environment"]
    assert environment["SLUICE_CONFIG"] == "/app/config/compose.yaml"
    assert all(environment[name].startswith(f"${{{name}:?") for name in TOKENS), "required, never a default"
    return load_config(ROOT / "config" / "compose.yaml", {**TOKENS, "SLUICE_DATA_DIR": "/data"})


def argv(service: dict) -> list[str]:
    """What the container runs: the image's entrypoint (`sluice`) unless overridden, then the command."""
    return list(service.get("entrypoint") or ["sluice"]) + list(service.get("command") or [])


def documented_commands() -> set[str]:
    """Every command the operating docs show: inline code spans and lines of fenced blocks."""
    text = (ROOT / "docs" / "operating.md").read_text()
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
    lines = {line.split("  #")[0].strip() for block in blocks for line in block.splitlines()}
    spans = set(re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)))
    return {c for c in lines | spans if c}


def test_every_sluice_service_runs_a_command_the_cli_has():
    commands = {c.name or c.callback.__name__ for c in cli.registered_commands}
    services = sluice_services()
    assert {"api", "worker", "poller", "flower"} <= services.keys()
    for name, service in services.items():
        if "entrypoint" not in service:
            assert service["command"][0] in commands, name


def test_each_service_runs_exactly_the_command_the_docs_give_for_it():
    documented = documented_commands()
    for name, service in sluice_services().items():
        assert " ".join(argv(service)) in documented, name
    redis = compose()["services"]["redis"]
    assert " ".join(redis["command"]) in documented


def test_the_docs_scale_services_the_compose_file_has():
    scaled = [c for c in documented_commands() if c.startswith("docker compose up")]
    assert "docker compose up -d --scale worker=3" in scaled
    assert "docker compose up -d --scale worker=3" in (ROOT / "docker-compose.yml").read_text()
    for command in scaled:
        for service in re.findall(r"--scale (\S+)=\d+", command):
            assert service in compose()["services"], command
            # a fixed name or host port would stop a second replica from starting
            assert not {"container_name", "ports"} & compose()["services"][service].keys()


def test_flower_runs_celerys_monitor_on_sluices_celery_app_from_the_image():
    flower = compose()["services"]["flower"]
    assert argv(flower)[:4] == ["celery", "-A", "workers.celery_app", "flower"]
    assert any(str(p).endswith(":5555") for p in flower["ports"])
    assert '".[flower]"' in (ROOT / "Dockerfile").read_text()
    assert re.search(r'^flower = \["flower', (ROOT / "pyproject.toml").read_text(), flags=re.M)


def test_every_service_has_a_health_check_and_those_that_run_sluice_use_commands_it_has():
    commands = {c.name or c.callback.__name__ for c in cli.registered_commands}
    for name, service in compose()["services"].items():
        check = service.get("healthcheck", {}).get("test")
        assert check, name
        for command in re.findall(r"\bsluice (\w[\w-]*)", " ".join(check)):
            assert command in commands, (name, command)


def test_sluice_services_share_the_data_volume_and_read_config_read_only():
    for name, service in central_services().items():
        assert "sluice-data:/data" in service["volumes"], name
    for name, service in sluice_services().items():
        assert "./config:/app/config:ro" in service["volumes"], name
        assert service["environment"]["SLUICE_DATA_DIR"] == "/data"
        assert service["environment"]["SLUICE_REDIS_URL"] == "redis://redis:6379/0"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"


def test_two_hosts_each_run_a_host_worker_on_a_volume_of_its_own_and_the_app_lists_them():
    hosts = host_services()
    config = compose_config()

    assert sorted(hosts) == ["web1", "web2"] and config.apps["hello"].hosts == ["web1", "web2"]
    volumes = {host: [v for v in service["volumes"] if v.endswith(":/data")] for host, service in hosts.items()}
    assert volumes == {"web1": ["web1-data:/data"], "web2": ["web2-data:/data"]}
    others = [v for s in compose()["services"].values() if s not in hosts.values() for v in s.get("volumes", [])]
    assert not {"web1-data:/data", "web2-data:/data"} & set(others), "no folder shared with the rest"
    assert {"web1-data", "web2-data"} <= compose()["volumes"].keys()
    for service in hosts.values():
        assert service["depends_on"]["api"]["condition"] == "service_healthy", "it fetches from the API"
    assert str(config.worker.store_url) == "http://api:8080" and "api" in config.api.hosts
    assert config.api.worker_token is not None


def test_redis_keeps_an_append_only_file_on_a_volume():
    redis = compose()["services"]["redis"]
    assert "--appendonly" in redis["command"] and redis["volumes"]


def _compose_client() -> list[str] | None:
    """`docker compose` (the plugin), else the standalone `docker-compose`; config needs no engine."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"],
                                                 capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


@pytest.mark.skipif(_compose_client() is None, reason="no docker compose client installed")
def test_docker_compose_accepts_the_file():
    done = subprocess.run([*_compose_client(), "config", "-q"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **TOKENS})
    assert done.returncode == 0, done.stderr
    unset = {k: v for k, v in os.environ.items() if k not in TOKENS}
    refused = subprocess.run([*_compose_client(), "config", "-q"], cwd=ROOT, capture_output=True, text=True, env=unset)
    assert refused.returncode != 0 and "SLUICE_API_TOKEN" in refused.stdout + refused.stderr
