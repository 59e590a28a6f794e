"""An app's Git mirror stays small between collections: the pins and packs its deployments
leave are let go and rolled up after a deployment, so the next one does not cost more for
them (issue 16). Real git, a real worker."""
from __future__ import annotations

from pathlib import Path

from orchestrator.sources.git_cache import KEEP
from orchestrator.sources.mirror_upkeep import PACKS, PINS
from tests.helpers import FUNCTION_APP, git, git_app
from tests.integration.flow import sync_and_wait

DEPLOYMENTS = PINS + 8


def pins(mirror: Path) -> set[str]:
    return {ref.removeprefix(KEEP) for ref in git(mirror, "for-each-ref", "--format=%(refname)", KEEP).split()}


def packs(mirror: Path) -> int:
    return len(list((mirror / "objects" / "pack").glob("*.pack")))


def test_a_mirror_deployed_from_dozens_of_times_between_collections_pins_a_bounded_few_kept_among_them_in_few_packs(
        workspace):
    repo = workspace.repo().through_a_mirror()
    repo.commit(FUNCTION_APP)
    services = workspace.configure({"hello": git_app(repo, workspace.target("hello"), keep_releases=1)},
                                   gc_interval="1h")
    deployed = []
    for i in range(DEPLOYMENTS):
        repo.commit({"HttpHello/__init__.py": f"def main(req):\n    return 'v{i}'\n"})
        deployed.append(sync_and_wait(services, "hello", timeout=60).revision)
    mirror = next((workspace.data_dir / "cache" / "git").glob("*.git"))

    pinned = pins(mirror)
    assert len(pinned) <= PINS + 2, pinned
    assert set(deployed[-2:]) <= pinned         # the live release's and the one kept
    assert deployed[0] not in pinned
    assert packs(mirror) <= PACKS
    assert git(mirror, "rev-list", "--objects", "--no-walk", deployed[-2])     # still whole
