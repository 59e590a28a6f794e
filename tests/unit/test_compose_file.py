import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from orchestrator.cli import cli

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_sluice_service_runs_a_command_the_cli_has():
    commands = {c.name or c.callback.__name__ for c in cli.registered_commands}
    services = {name: s for name, s in compose()["services"].items() if s.get("image") == "sluice:latest"}
    assert {"api", "worker", "poller"} <= services.keys()
    for service in services.values():
        assert service["command"][0] in commands


def test_redis_keeps_an_append_only_file_on_a_volume():
    redis = compose()["services"]["redis"]
    assert "--appendonly" in redis["command"] and redis["volumes"]


def _compose_plugin() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "compose", "version"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _compose_plugin(), reason="docker compose plugin not installed")
def test_docker_compose_accepts_the_file():
    subprocess.run(["docker", "compose", "config", "-q"], cwd=ROOT, check=True)
