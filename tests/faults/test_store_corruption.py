"""A store blob written over under a live site (release files are hardlinks of blobs, so the
site changes at once): `sluice verify` names it, no new release serves it, the scrub counts
it, and the bytes come from the source again."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from orchestrator.core.errors import PermanentError
from orchestrator.deploying.operator_actions import redeploy
from orchestrator.deploying.rollback import rollback
from orchestrator.observe.metrics import exposition
from orchestrator.releases.snapshots import SnapshotStore
from orchestrator.triggers.scrubbing import Scrubber
from tests.helpers import git_app
from tests.integration.flow import sync_and_wait, wait_until_ended, wait_until_let_go

pytestmark = pytest.mark.faults

APP = "hello"
SITE = {"index.html": "<h1>v1</h1>\n", "css/site.css": "body {}\n"}
TAMPERED = b"<h1>defaced</h1>\n"
RETRY = {"attempts": 3, "base": "0.2s", "max": "1s"}


@pytest.fixture
def live(rig_factory):
    """Two deployments, so the first release is kept and shares index.html's inode."""
    rig = rig_factory()
    repo = rig.repo()
    repo.commit(SITE)
    services = rig.configure({APP: git_app(repo, rig.target(APP), layout="site", retry=RETRY)},
                             scrub_interval=0)
    rig.start_worker()
    first = sync_and_wait(services, APP)
    repo.commit({"css/site.css": "body { color: red }\n"})
    second = sync_and_wait(services, APP)
    assert (first.status, second.status) == ("success", "success")
    return rig, services, first, second


def corrupt_live_blob(rig, path: str = "index.html") -> str:
    """Write over the blob the live file links, as a stray tool with write access would."""
    live_file = rig.target(APP) / path
    sha = hashlib.sha256(live_file.read_bytes()).hexdigest()
    blob = SnapshotStore(rig.data_dir / "store").blob_path(sha)
    assert os.path.samefile(blob, live_file)
    os.chmod(blob, 0o644)
    with open(blob, "wb") as f:
        f.write(TAMPERED)
    os.chmod(blob, 0o444)
    assert live_file.read_bytes() == TAMPERED
    return sha


def sluice(rig, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", "--config", str(rig.config_path),
                           *args], capture_output=True, text=True, timeout=120)


def corrupt_count(services, found_by: str) -> float:
    text = exposition(services)[0].decode()
    line = f'sluice_store_corrupt_blobs_total{{found_by="{found_by}"}} '
    return float(next(v.removeprefix(line) for v in text.splitlines() if v.startswith(line)))


def retry_reasons(services, deployment_id: str) -> list[str]:
    return [r.event.reason for r in services.store.read(APP)
            if r.event.type == "DeploymentRetrying" and r.event.deployment_id == deployment_id]


def test_verify_names_app_file_and_blob_in_every_release_sharing_it_and_exits_non_zero(live):
    rig, _, first, second = live
    clean = sluice(rig, "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    sha = corrupt_live_blob(rig)
    found = sluice(rig, "verify")
    assert found.returncode == 1, found.stdout + found.stderr
    tampered = hashlib.sha256(TAMPERED).hexdigest()[:12]
    assert f"store: blob {sha} hashes to {tampered}" in found.stdout
    assert (f"{APP}: index.html: hashes to {tampered} in the live release of deployment "
            f"{second.id}, not to blob {sha}") in found.stdout
    assert f"{APP}: index.html: hashes to {tampered} in the kept release of deployment {first.id}" \
        in found.stdout
    assert "css/site.css" not in found.stdout
    assert sluice(rig, "verify", APP).returncode == 1


def test_a_rebuild_after_the_target_is_removed_fails_naming_the_file_then_serves_the_source(live):
    rig, services, _, _ = live
    sha = corrupt_live_blob(rig)
    rig.target(APP).unlink()
    rebuilt = sync_and_wait(services, APP, timeout=60)
    assert rebuilt.status == "success", rebuilt.message
    assert (rig.target(APP) / "index.html").read_text() == SITE["index.html"]
    assert any(r.startswith(f"index.html: the store's copy of its content (blob {sha}) is corrupt")
               for r in retry_reasons(services, rebuilt.id))
    assert corrupt_count(services, "deployment") == 1


def test_a_redeploy_of_the_live_snapshot_is_not_skipped_and_fetches_the_corrupt_file_again(live):
    rig, services, _, second = live
    corrupt_live_blob(rig)
    again = wait_until_ended(services, APP, redeploy(services, APP).deployment_id, timeout=60)
    wait_until_let_go(services, APP)
    assert again.status == "success", again.message
    assert any("index.html" in r for r in retry_reasons(services, again.id))
    assert (rig.target(APP) / "index.html").read_text() == SITE["index.html"]
    assert sluice(rig, "verify", APP).returncode == 0


def repair_with_verify(rig, services) -> str:
    """`sluice verify --repair`, then its redeploy's end: the redeploy's id."""
    repaired = sluice(rig, "verify", "--repair")
    assert repaired.returncode == 1, repaired.stdout + repaired.stderr
    assert f"{APP}: redeploying as deployment " in repaired.stdout
    deployment_id = repaired.stdout.split(f"{APP}: redeploying as deployment ")[1].split(",")[0]
    assert wait_until_ended(services, APP, deployment_id, timeout=60).status == "success"
    wait_until_let_go(services, APP)
    return deployment_id


def test_verify_repair_quarantines_and_redeploys_so_the_site_serves_the_source_again(live):
    rig, services, _, _ = live
    corrupt_live_blob(rig)
    deployment_id = repair_with_verify(rig, services)
    assert retry_reasons(services, deployment_id) == []        # fetched again at once
    assert (rig.target(APP) / "index.html").read_text() == SITE["index.html"]
    assert sluice(rig, "verify").returncode == 0
    assert corrupt_count(services, "verify") == 1


def test_a_kept_release_sharing_a_quarantined_blob_is_never_rolled_back_to(live):
    rig, services, first, _ = live
    corrupt_live_blob(rig)
    repair_with_verify(rig, services)
    with pytest.raises(PermanentError, match=f"{first.id} holds content found corrupt "
                                             rf"\(index.html\); redeploy it instead"):
        rollback(services, APP, first.id)
    with pytest.raises(PermanentError, match="no earlier release to roll back to"):
        rollback(services, APP)        # the second release shares index.html's inode too
    assert (rig.target(APP) / "index.html").read_text() == SITE["index.html"]


def test_the_scrub_counts_a_corrupt_blob_and_the_app_serving_it_is_redeployed(live):
    rig, services, _, second = live
    corrupt_live_blob(rig)
    before = services.projections.app(APP).deployments.keys()
    scrubbed = Scrubber(services).round()
    assert scrubbed.checked >= 3 and len(scrubbed.corrupt) == 1
    assert corrupt_count(services, "scrub") == 1
    [repair] = services.projections.app(APP).deployments.keys() - before
    assert wait_until_ended(services, APP, repair, timeout=60).status == "success"
    wait_until_let_go(services, APP)
    assert (rig.target(APP) / "index.html").read_text() == SITE["index.html"]
