"""Release folders retention lets go of: the newest becomes the app's spare (named by the
snapshot it holds), the rest go to the trash, emptied off the app's lease."""
from __future__ import annotations

import os

from orchestrator.releases.spares import (
    empty_trash,
    make_spare,
    spare_snapshots,
    take_spare,
    to_trash,
)


def release(folder, name: str):
    path = folder / name
    (path / "sub").mkdir(parents=True)
    (path / "sub" / "f.txt").write_text(name)
    os.chmod(path / "sub", 0o555)
    os.chmod(path, 0o555)
    return path


def test_a_release_let_go_becomes_the_spare_in_place_of_the_one_before(tmp_path):
    apps = tmp_path / "releases" / "web"
    make_spare(release(apps, "d1"), "s1")
    make_spare(release(apps, "d2"), "s2")

    assert take_spare(apps) == (apps / ".spare-s2", "s2")
    assert (apps / ".spare-s2" / "sub" / "f.txt").read_text() == "d2"
    assert len(os.listdir(apps / ".trash")) == 1        # the older spare, not yet deleted
    assert spare_snapshots(tmp_path / "releases") == {"s2"}


def test_extra_spares_left_by_a_crash_go_to_the_trash_and_one_is_taken(tmp_path):
    apps = tmp_path / "releases" / "web"
    release(apps, ".spare-a")
    release(apps, ".spare-b")

    assert take_spare(apps) == (apps / ".spare-a", "a")
    assert sorted(n for n in os.listdir(apps) if n.startswith(".spare-")) == [".spare-a"]


def test_the_trash_is_emptied_of_read_only_releases(tmp_path):
    apps = tmp_path / "releases" / "web"
    to_trash(release(apps, "d1"))
    to_trash(release(apps, "d2.building"))

    assert empty_trash(apps) == 2
    assert os.listdir(apps) == [".trash"] and os.listdir(apps / ".trash") == []
    assert empty_trash(tmp_path / "releases" / "none") == 0
