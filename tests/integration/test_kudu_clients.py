"""Third-party Kudu clients against Sluice's API on a loopback port: the npm package
azure-actions-appservice-rest (what GitHub's azure/webapps-deploy and azure/functions-action
deploy with), installed from the registry once per session and driven by
tests/clients/kudu_client.js with node; a real Redis and worker."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from orchestrator.access.credentials import set_credentials
from orchestrator.core.statuses import DeploymentStatus
from tests.helpers import FUNCTION_APP
from tests.integration.flow import tree
from tests.integration.test_zip_deploy import V2, zip_of
from tests.servers.api_server import serving

PACKAGE = "azure-actions-appservice-rest@1.3.34"
SCRIPT = Path(__file__).parents[1] / "clients" / "kudu_client.js"
PASSWORD = "client-pass-1"
# The package depends on npm's placeholder `fs` (0.0.1-security, an empty package): Node
# always loads its own fs, so any empty package will do, and a registry mirror without the
# placeholder still installs.
MANIFEST = {"name": "sluice-kudu-clients", "private": True,
            "overrides": {"fs": "file:./fs-placeholder"}}
# What the actions' runners set: the client puts them in its deployment messages.
GITHUB = {"GITHUB_SHA": "0123abc", "GITHUB_REPOSITORY": "example/hello", "GITHUB_ACTOR": "ann"}

needs_node = pytest.mark.skipif(shutil.which("npm") is None or shutil.which("node") is None,
                                reason="npm or node is not installed (make test installs Debian's npm)")
pytestmark = needs_node


@pytest.fixture(scope="session")
def node_modules(tmp_path_factory) -> Path:
    """The package installed from the registry into a folder of the session's own."""
    folder = tmp_path_factory.mktemp("npm-kudu-client")
    (folder / "fs-placeholder").mkdir()
    (folder / "fs-placeholder" / "package.json").write_text('{"name": "fs", "version": "0.0.1-security"}')
    (folder / "package.json").write_text(json.dumps(MANIFEST))
    installed = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--save-exact", "--prefix", str(folder), PACKAGE],
        capture_output=True, text=True, timeout=300, cwd=folder)
    if installed.returncode != 0:
        pytest.fail(f"could not install {PACKAGE} from the npm registry "
                    f"({_registry()}); this test needs it:\n{installed.stderr[-2000:]}", pytrace=False)
    return folder / "node_modules"


def _registry() -> str:
    return subprocess.run(["npm", "config", "get", "registry"], capture_output=True, text=True).stdout.strip()


@dataclass
class Client:
    node_modules: Path
    scm_uri: str
    folder: Path

    def deploy(self, action: str, package: bytes) -> tuple[dict, str]:
        zip_path = self.folder / f"{action}.zip"
        zip_path.write_bytes(package)
        return self.run(action, str(zip_path))

    def run(self, action: str, arg: str = "") -> tuple[dict, str]:
        """The client's result and what it printed (its console and GitHub Actions lines)."""
        out = self.folder / f"{action}.json"
        ran = subprocess.run(
            ["node", str(SCRIPT), str(self.node_modules), self.scm_uri, "alice", PASSWORD, action,
             arg, str(out)],
            capture_output=True, text=True, timeout=300, env=_plain_http_env())
        assert ran.returncode == 0 and out.exists(), ran.stdout + ran.stderr
        return json.loads(out.read_text()), ran.stdout


def _plain_http_env() -> dict[str, str]:
    """Loopback HTTP straight to the API: no proxy, no TLS settings from the developer's shell."""
    proxies = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "node_extra_ca_certs",
               "node_tls_reject_unauthorized", "node_options"}
    kept = {k: v for k, v in os.environ.items() if k.lower() not in proxies}
    return {**kept, **GITHUB, "NO_PROXY": "127.0.0.1", "RUNNER_TEMP": os.environ.get("TMPDIR", "/tmp")}


@pytest.fixture
def client(workspace, node_modules, tmp_path):
    """App `hello` takes zips (manual source, user alice): the client aimed at its Kudu root."""
    services = workspace.configure({"hello": {"target": str(workspace.target("hello")), "build": "none"}})
    set_credentials(services, "hello", "alice", PASSWORD)
    with serving(services) as base:
        yield services, Client(node_modules, f"{base}/scm/hello", tmp_path)


def test_webapps_deploys_zip_deploy_puts_the_zip_live_and_reads_back_its_details_and_log(client, workspace):
    services, kudu = client

    result, printed = kudu.deploy("zipdeploy", zip_of(FUNCTION_APP))

    assert "error" not in result, printed
    assert tree(workspace.target("hello")) == FUNCTION_APP
    details = result["details"]
    assert details["id"] == result["id"] == services.projections.app("hello").active_deployment
    assert (details["status"], details["complete"], details["active"]) == (4, True, True)
    assert details["deployer"] == "GITHUB_ZIP_DEPLOY"
    assert json.loads(details["message"]) == {       # the workflow's, as the client sent it
        "type": "deployment", "sha": "0123abc", "repoName": "example/hello", "actor": "ann",
        "slotName": "production", "commitMessage": "release from CI"}
    assert f"Deploy logs can be viewed at {details['log_url']}" in printed
    assert result["log"] and all(entry["log_time"] and entry["message"] for entry in result["log"])
    assert result["log"][-1]["type"] == 0


def test_a_failing_zip_deployment_is_reported_failed_by_the_client_with_its_log(client, workspace):
    services, kudu = client
    kudu.deploy("zipdeploy", zip_of(FUNCTION_APP))

    result, printed = kudu.deploy("zipdeploy", zip_of({**V2, "HttpHello/function.json": "{not json"}))

    assert result["error"] == "Package deployment using ZIP Deploy failed. Refer logs for more details."
    failed = [d for d in services.projections.app("hello").deployments.values()
              if d.status == DeploymentStatus.FAILED]
    assert len(failed) == 1 and "HttpHello/function.json" in failed[0].message
    assert failed[0].message in printed          # the client prints the deployment's log
    assert tree(workspace.target("hello")) == FUNCTION_APP


def test_functions_actions_synchronous_zip_deploy_returns_once_the_zip_is_live(client, workspace):
    services, kudu = client

    result, printed = kudu.deploy("runfromzip", zip_of(V2))

    assert result == {}, printed
    assert "Successfully deployed web package to App Service." in printed
    assert tree(workspace.target("hello")) == V2
    (d,) = services.projections.app("hello").deployments.values()
    assert d.deployer == "GITHUB" and d.status == DeploymentStatus.SUCCESS


def test_webapps_deploys_onedeploy_of_a_zip_puts_it_live(client, workspace):
    _, kudu = client

    result, printed = kudu.deploy("onedeploy", zip_of(V2))

    assert "error" not in result, printed
    assert result["details"]["status"] == 4 and result["details"]["deployer"] == "OneDeploy"
    assert tree(workspace.target("hello")) == V2


def test_a_hostile_zip_is_refused_and_the_client_fails_with_the_400_deploying_nothing(client):
    services, kudu = client

    result, _ = kudu.deploy("zipdeploy", zip_of({**V2, "../../escape.txt": "x"}))

    assert result["error"] == "Failed to deploy web package to App Service.\nBad Request (CODE: 400)"
    assert services.projections.app("hello").deployments == {}


def test_webapps_deploys_status_report_is_refused_with_400_and_redeploys_nothing(client):
    services, kudu = client
    deployed, _ = kudu.deploy("zipdeploy", zip_of(FUNCTION_APP))

    for reported in ("", deployed["id"]):       # the client's own id, then the deployment's
        result, printed = kudu.run("report", reported)

        assert result == {}, printed            # the client warns and goes on
        assert "Failed to update deployment history.%0ABad Request (CODE: 400)" in printed
    assert list(services.projections.app("hello").deployments) == [deployed["id"]]


@pytest.mark.parametrize("body", [None, {"clean": True, "needFileUpdate": True}])
def test_a_put_of_a_deployment_without_a_status_report_still_deploys_it_again(client, body):
    services, kudu = client
    deployed, _ = kudu.deploy("zipdeploy", zip_of(FUNCTION_APP))

    again = requests.put(f"{kudu.scm_uri}/api/deployments/{deployed['id']}", json=body,
                         auth=("alice", PASSWORD), timeout=60)

    assert again.status_code == 200, again.text
    redeployed = services.projections.app("hello").deployments[again.json()["id"]]
    assert redeployed.trigger == "redeploy" and redeployed.origin == deployed["id"]
