"""Git and Mercurial sources over ssh:// with a key from the config. No sshd runs here:
tests/servers/fake_ssh.py stands in for the ssh client and runs the remote command locally,
so git's and hg's own ssh transports, and the key plumbing, are what is exercised."""
from __future__ import annotations

import json

import pytest

from orchestrator.config.sources import GitSourceConfig, HgSourceConfig
from orchestrator.sources.git import GitSource
from orchestrator.sources.hg import HgSource
from tests.helpers import FUNCTION_APP
from tests.integration.flow import sync_and_wait, tree
from tests.servers.hg_serve import HgRepo

SITE = {"index.html": "<h1>over ssh</h1>"}


@pytest.fixture
def key(tmp_path):
    path = tmp_path / "keys" / "deploy_ed25519"
    path.parent.mkdir()
    path.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a real key\n")
    path.chmod(0o600)
    return path


def ssh_calls(key) -> list[str]:
    log = key.parent / "ssh.log"
    return log.read_text().splitlines() if log.exists() else []


def test_a_git_repository_over_ssh_deploys_with_the_configured_key(workspace, key):
    repo = workspace.repo()
    head = repo.commit(FUNCTION_APP)
    url = f"ssh://git@ssh.sluice.test{repo.path}"
    assert GitSource(GitSourceConfig(type="git", url=url, ssh_key=key), workspace.root).head() == head

    services = workspace.configure({"hello": {
        "target": str(workspace.target("hello")),
        "source": {"type": "git", "url": url, "ssh_key": str(key)}}})
    d = sync_and_wait(services, "hello")

    assert d.status == "success" and tree(workspace.target("hello")) == FUNCTION_APP
    calls = ssh_calls(key)
    assert len(calls) >= 2 and all(f"-i {key}" in c and "IdentitiesOnly=yes" in c for c in calls)
    assert any("git-upload-pack" in c for c in calls)


def test_a_mercurial_repository_over_ssh_deploys_with_the_configured_key(workspace, key, tmp_path):
    repo = HgRepo(tmp_path / "hg-repo")
    node = repo.commit(SITE)
    url = f"ssh://ssh.sluice.test/{repo.path}"          # ssh://host//absolute/path
    config = HgSourceConfig(type="hg", url=url, ssh_key=key)
    assert HgSource(config, tmp_path / "cache").head() == node

    services = workspace.configure({"site": {
        "layout": "site", "target": str(workspace.target("site")),
        "source": {"type": "hg", "url": url, "ssh_key": str(key)}}})
    d = sync_and_wait(services, "site")

    assert d.status == "success" and tree(workspace.target("site")) == SITE
    recorded = json.dumps([r.event.to_fields() for r in services.store.read("site")])
    assert node in recorded
    assert all(f"-i {key}" in c for c in ssh_calls(key)) and any("serve --stdio" in c for c in ssh_calls(key))
