"""config/live.py: a long-running process reads its config once and again only when the
file or the environment it read may have changed. The file is real; its stat and the clock
are the test's, so "changed" and "not changed" are the test's to say."""
from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from orchestrator.config.live import LiveConfig
from orchestrator.config.settings import load_config
from orchestrator.config.stamps import RACY_SECONDS
from orchestrator.core.errors import ConfigError
from orchestrator.runtime.services import FollowedServices

WRITTEN_AT = 1_700_000_000.0


class World:
    """A config file whose stat says what the test sets, a clock, and a count of reads."""

    def __init__(self, tmp_path: Path):
        self.path = tmp_path / "sluice.yaml"
        self.stamp = {"st_mtime_ns": int(WRITTEN_AT * 1e9), "st_size": 100, "st_ino": 7}
        self.now = WRITTEN_AT + 60
        self.env: dict[str, str] = {}
        self.reads = 0

    def write(self, apps: str = "a", **stamp: int) -> None:
        self.path.write_text("apps:\n" + "".join(f"  {name}: {{target: /srv/{name}}}\n"
                                                 for name in apps.split()))
        self.stamp.update(stamp)

    def stat(self, path: Path) -> SimpleNamespace:
        assert path == self.path
        return SimpleNamespace(**self.stamp)

    def load(self, path, env):
        self.reads += 1
        return load_config(path, env)

    def live(self) -> LiveConfig:
        return LiveConfig(self.path, self.env, stat=self.stat, clock=lambda: self.now, load=self.load)


@pytest.fixture
def world(tmp_path) -> World:
    w = World(tmp_path)
    w.write("a")
    return w


def test_the_config_is_read_once_while_the_file_keeps_its_mtime_size_and_inode(world):
    live = world.live()
    first = live.current()
    world.write("a b")          # the stat still says what it said: taken as unchanged

    assert live.current() is first and live.current() is first
    assert world.reads == 1 and list(first.apps) == ["a"]


@pytest.mark.parametrize("change", [{"st_mtime_ns": int((WRITTEN_AT + 1) * 1e9)},
                                    {"st_size": 101}, {"st_ino": 8}])
def test_a_changed_mtime_size_or_inode_reads_the_file_again(world, change):
    live = world.live()
    live.current()
    world.write("a b", **change)

    assert list(live.current().apps) == ["a", "b"]
    assert world.reads == 2 and list(live.current().apps) == ["a", "b"] and world.reads == 2


@pytest.mark.parametrize("variable", ["SLUICE_DATA_DIR", "TARGET_ROOT"])
def test_a_change_to_a_variable_the_read_looked_at_reads_it_again_and_others_do_not(world, variable):
    world.path.write_text("apps:\n  a: {target: '${TARGET_ROOT}/a'}\n")
    world.env.update(TARGET_ROOT="/srv", SLUICE_DATA_DIR="/var/one")
    live = world.live()
    live.current()
    world.env["UNRELATED"] = "x"
    live.current()
    assert world.reads == 1

    world.env[variable] = "/elsewhere"

    config = live.current()
    assert world.reads == 2
    assert Path("/elsewhere") in (config.data_dir, config.apps["a"].target.parent)


def test_a_file_written_just_before_it_was_read_is_read_again_until_it_is_older(world):
    # its mtime's clock ticks coarser than nanoseconds: a same-size write in the same tick
    # would leave every part of the stat as it was
    world.now = WRITTEN_AT + 0.001
    live = world.live()
    live.current()
    live.current()
    assert world.reads == 2

    world.now = WRITTEN_AT + RACY_SECONDS + 0.001
    live.current()
    live.current()
    assert world.reads == 3


def test_a_broken_file_keeps_the_last_good_config_and_says_so_once(world, caplog):
    live = world.live()
    good = live.current()
    world.path.write_text("apps: {a: {target: /srv/a, colour: red}}\n")
    world.stamp["st_size"] = 200

    with caplog.at_level(logging.ERROR, logger="sluice.config"):
        assert live.current() is good and live.current() is good

    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "apps.a.colour: unknown key" in errors[0], errors
    assert "last good" in errors[0] and world.reads == 2

    world.write("a b", st_size=300)
    assert list(live.current().apps) == ["a", "b"]


def test_a_process_that_never_had_a_good_config_gets_the_error_every_time(world):
    world.path.write_text("apps: [not, a, mapping]\n")
    live = world.live()
    for _ in range(2):
        with pytest.raises(ConfigError, match="apps"):
            live.current()
    world.write("a", st_size=300)
    assert list(live.current().apps) == ["a"]


def test_services_are_kept_while_the_config_is_the_same_and_built_again_when_it_changes(world):
    followed = FollowedServices(world.live().current)
    first = followed()
    assert followed() is first

    world.write("a b", st_size=300)

    again = followed()
    assert again is not first and list(again.config.apps) == ["a", "b"]
