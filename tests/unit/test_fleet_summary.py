"""The config's summary `sluice apps` keeps for its short way (cli/fleet_summary.py): used
only while the read it came from still holds."""
from __future__ import annotations

import os
import time

import pytest

from orchestrator.cli import fleet_summary
from orchestrator.cli.fleet_summary import FleetSummary, keep, kept
from orchestrator.config.stamps import RACY_SECONDS, ReadKeys, Stamp, file_stamp
from orchestrator.observe.fleet_table import AppFacts

SUMMARY = FleetSummary("redis://127.0.0.1:6379/0", "/var/sluice", [AppFacts("web", "functions", "git /r @ main", "/t")])


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "sluice.yaml"
    path.write_text("apps: {}\n")
    past = time.time() - 60
    os.utime(path, (past, past))
    return path


def kept_after(config, folder, env: dict, read_at: float | None = None, now_env: dict | None = None):
    looked = ReadKeys(env)
    looked.get("SLUICE_REDIS_URL")
    keep(SUMMARY, Stamp.of(config, file_stamp(config), looked), read_at or time.time(), folder)
    return kept(config, now_env if now_env is not None else env, folder)


def test_a_summary_holds_while_the_file_and_the_variables_it_read_are_unchanged(config, tmp_path):
    assert kept_after(config, tmp_path / "cache", {}) == SUMMARY


def test_a_variable_the_read_looked_at_set_since_is_a_new_read(config, tmp_path):
    assert kept_after(config, tmp_path / "cache", {}, now_env={"SLUICE_REDIS_URL": "redis://elsewhere"}) is None


def test_an_edited_file_is_a_new_read(config, tmp_path):
    keep(SUMMARY, Stamp.of(config, file_stamp(config), ReadKeys({})), time.time(), tmp_path)
    config.write_text("apps: {web: {}}\n")

    assert kept(config, {}, tmp_path) is None


def test_a_read_within_the_racy_window_of_the_files_write_is_never_trusted(config, tmp_path):
    written = file_stamp(config)[0] / 1e9

    assert kept_after(config, tmp_path, {}, read_at=written + RACY_SECONDS / 2) is None


def test_a_summary_described_by_other_code_is_a_new_read(config, tmp_path, monkeypatch):
    keep(SUMMARY, Stamp.of(config, file_stamp(config), ReadKeys({})), time.time(), tmp_path)
    monkeypatch.setattr(fleet_summary, "DESCRIBED_BY", [config])

    assert kept(config, {}, tmp_path) is None


def test_a_damaged_or_missing_summary_is_a_new_read(config, tmp_path):
    folder = tmp_path / "cache"
    assert kept(config, {}, folder) is None
    keep(SUMMARY, Stamp.of(config, file_stamp(config), ReadKeys({})), time.time(), folder)
    for path in folder.iterdir():
        path.write_text('{"format": 1')

    assert kept(config, {}, folder) is None
