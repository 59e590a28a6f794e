"""The tests' app host (tests/servers/release_host.py) serves the release it pinned, as a real
host does: a moved symlink changes nothing until SIGHUP or a restart."""
from __future__ import annotations

import os
import subprocess

import httpx
import pytest

from tests.helpers import wait_for, write_files
from tests.servers.release_host import ReleaseHost


def release(root, name: str, files: dict[str, str]):
    folder = root / "releases" / name
    write_files(folder, files)
    return folder


def point(target, folder) -> None:
    """Move the target symlink atomically, as a switch does."""
    scratch = target.with_name(target.name + ".new")
    os.symlink(folder, scratch)
    os.replace(scratch, target)


@pytest.fixture
def host(tmp_path, release_host):
    return release_host(tmp_path / "site")


def test_before_any_release_every_path_answers_503(host):
    assert httpx.get(host.url + "/health").status_code == 503
    assert httpx.get(host.url + "/index.html").status_code == 503


def test_the_release_pinned_at_start_answers_even_after_the_symlink_moves(tmp_path):
    point(tmp_path / "site", release(tmp_path, "r1", {"version": "v1", "index.html": "one"}))
    with ReleaseHost(tmp_path / "site", tmp_path / "host") as host:
        point(tmp_path / "site", release(tmp_path, "r2", {"version": "v2", "index.html": "two"}))

        health = httpx.get(host.url + "/health")

        assert (health.status_code, health.text, health.headers["X-Release"]) == (200, "v1", "r1")
        assert httpx.get(host.url + "/index.html").text == "one"


def test_sighup_pins_the_release_the_symlink_points_at_now(tmp_path):
    point(tmp_path / "site", release(tmp_path, "r1", {"version": "v1"}))
    with ReleaseHost(tmp_path / "site", tmp_path / "host") as host:
        point(tmp_path / "site", release(tmp_path, "r2", {"version": "v2"}))

        host.reload()

        answer = wait_for(lambda: (a := httpx.get(host.url + "/health")).headers["X-Reloads"] == "1" and a,
                          what="the host to take the SIGHUP")
        assert (answer.text, answer.headers["X-Release"]) == ("v2", "r2")


def test_sighup_with_no_release_live_any_more_answers_503(tmp_path):
    point(tmp_path / "site", release(tmp_path, "r1", {"version": "v1"}))
    with ReleaseHost(tmp_path / "site", tmp_path / "host") as host:
        (tmp_path / "site").unlink()

        host.reload()

        wait_for(lambda: httpx.get(host.url + "/health").status_code == 503, what="503")


def test_health_answers_the_status_the_release_holds_and_then_each_of_a_sequence(tmp_path):
    point(tmp_path / "site", release(tmp_path, "r1", {"status": "500\n", "version": "broken"}))
    with ReleaseHost(tmp_path / "site", tmp_path / "host") as host:
        assert httpx.get(host.url + "/health").status_code == 500
        point(tmp_path / "site", release(tmp_path, "r2", {"status": "200 200 503"}))
        host.reload()
        wait_for(lambda: httpx.get(host.url + "/").headers["X-Release"] == "r2", what="r2 pinned")

        statuses = [httpx.get(host.url + "/health").status_code for _ in range(4)]

        assert statuses == [200, 200, 503, 503]


def test_a_file_the_release_lacks_or_outside_it_is_404(tmp_path):
    point(tmp_path / "site", release(tmp_path, "r1", {"index.html": "one"}))
    (tmp_path / "secret").write_text("no")
    with ReleaseHost(tmp_path / "site", tmp_path / "host") as host:
        assert httpx.get(host.url + "/missing.html").status_code == 404
        assert httpx.get(host.url + "/../../secret").status_code == 404
        assert httpx.get(host.url + "/health").text == ""     # no version file: empty body


def test_sigterm_stops_the_host_and_removes_its_pidfile(host):
    pid = host.pid
    assert pid is not None

    host.stop()

    assert not host.pidfile.exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(host.url + "/health")


def test_the_restart_command_replaces_the_running_host_on_its_port_with_the_live_release(tmp_path):
    point(tmp_path / "site", release(tmp_path, "r1", {"version": "v1"}))
    with ReleaseHost(tmp_path / "site", tmp_path / "host") as host:
        first = host.pid
        point(tmp_path / "site", release(tmp_path, "r2", {"version": "v2"}))

        # as an `activate` command runs it: its own process group, output captured
        subprocess.run(host.restart_command(), check=True, capture_output=True, timeout=30,
                       start_new_session=True)

        assert host.pid not in (None, first)
        answer = httpx.get(host.url + "/health")
        assert (answer.text, answer.headers["X-Release"], answer.headers["X-Reloads"]) == ("v2", "r2", "0")
