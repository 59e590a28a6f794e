"""Build commands as real processes: their deadlines, their output, their environment and
the bubblewrap sandbox."""
import os
import stat
import sys

import pytest

from orchestrator.building.command import (
    MAX_LINE,
    TAIL_LINES,
    build_environment,
    run_build_command,
    sandbox_for,
)
from orchestrator.core.errors import BuildFailed, PermanentError
from tests.helpers import wait_for
from tests.process_tree import alive

PARENT_SECRETS = {"SLUICE_API_TOKEN": "api-token", "SLUICE_REDIS_URL": "redis://:pw@localhost/0",
                  "GITHUB_TOKEN": "ghp_secret", "AZURE_DEVOPS_PASSWORD": "hunter2",
                  "REDIS_URL": "redis://:pw@cache/1", "AWS_SECRET_ACCESS_KEY": "aws-secret"}


def run(argv, tmp_path, timeout=60.0, idle_timeout=60.0, sandbox=None):
    lines: list[str] = []
    env = build_environment(tmp_path / "home", {})
    result = run_build_command(argv, tmp_path, env, timeout=timeout, idle_timeout=idle_timeout,
                               on_output=lines.append, sandbox=sandbox)
    return result, lines


def gone(pid: int) -> None:
    """SIGKILL is delivered a moment after kill(2) returns."""
    wait_for(lambda: not alive(pid), timeout=10, what=f"process {pid} to be gone")


def child_pid(lines: list[str]) -> int:
    return int(next(line for line in lines if line.startswith("child ")).split()[1])


def test_a_command_past_its_timeout_is_killed_with_the_children_it_started(tmp_path):
    result, lines = run(["sh", "-c", "sleep 300 & echo child $!; while :; do echo tick; sleep 0.1; done"],
                        tmp_path, timeout=1.5)
    assert result.timed_out == "timeout"
    assert result.exit_code is None
    gone(child_pid(lines))


def test_a_command_that_stops_printing_is_killed_after_its_idle_timeout(tmp_path):
    result, lines = run(["sh", "-c", "sleep 300 & echo child $!; echo working; wait"],
                        tmp_path, idle_timeout=1.0)
    assert result.timed_out == "idle_timeout"
    assert result.tail[-1] == "working"
    gone(child_pid(lines))


def test_a_command_that_keeps_printing_is_not_idle(tmp_path):
    result, lines = run(["sh", "-c", "for i in 1 2 3 4 5; do echo $i; sleep 0.3; done"],
                        tmp_path, idle_timeout=2.5)
    assert result.timed_out is None
    assert result.exit_code == 0
    assert lines == ["1", "2", "3", "4", "5"]


def test_output_lines_of_stdout_and_stderr_arrive_in_order_and_the_tail_keeps_the_last_50(tmp_path):
    script = ("import sys\n"
              "for i in range(120):\n"
              "    out = sys.stderr if i % 3 else sys.stdout\n"
              "    out.write(f'line {i}\\n'); out.flush()\n")
    result, lines = run([sys.executable, "-c", script], tmp_path)
    assert lines == [f"line {i}" for i in range(120)]
    assert TAIL_LINES == 50
    assert result.tail == lines[-50:]
    assert result.exit_code == 0 and result.timed_out is None


def test_an_overlong_line_is_cut_and_the_next_line_still_arrives(tmp_path):
    script = "import sys; sys.stdout.write('x' * 100000 + '\\nnext\\nlast without newline')"
    result, lines = run([sys.executable, "-c", script], tmp_path)
    assert lines == ["x" * MAX_LINE, "next", "last without newline"]


def test_a_failing_command_gives_its_exit_code_and_last_lines(tmp_path):
    result, _ = run(["sh", "-c", "echo 'ERROR: No matching distribution found for nope'; exit 3"], tmp_path)
    assert result.exit_code == 3
    assert result.timed_out is None
    assert result.tail == ["ERROR: No matching distribution found for nope"]


def test_a_program_that_cannot_be_started_fails_the_build_naming_it(tmp_path):
    with pytest.raises(BuildFailed, match="no-such-build-tool"):
        run(["no-such-build-tool", "install"], tmp_path)


def test_a_command_that_leaves_a_background_child_ends_with_its_leader_and_the_child_is_killed(tmp_path):
    result, lines = run(["sh", "-c", "sleep 300 & echo child $!"], tmp_path, timeout=120)
    assert result.timed_out is None
    assert result.exit_code == 0
    gone(child_pid(lines))


def test_the_build_environment_holds_path_lang_home_tmpdir_and_build_env_only(tmp_path):
    base = {"PATH": "/usr/local/bin:/usr/bin:/bin", "USER": "sluice", **PARENT_SECRETS}
    env = build_environment(tmp_path / "home", {"PIP_NO_INDEX": "1"}, base=base)
    assert env == {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                   "HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path / "home" / "tmp"),
                   "PIP_NO_INDEX": "1"}
    assert (tmp_path / "home" / "tmp").is_dir()


def test_a_build_that_prints_its_environment_shows_no_secret_of_the_parent(tmp_path, monkeypatch):
    for name, value in PARENT_SECRETS.items():
        monkeypatch.setenv(name, value)
    result, lines = run(["env"], tmp_path)
    assert result.exit_code == 0
    assert f"HOME={tmp_path / 'home'}" in lines
    printed = "\n".join(lines)
    assert "SLUICE_" not in printed
    for value in PARENT_SECRETS.values():
        assert value not in printed


# --- the sandbox ----------------------------------------------------------------------------

def fake_bwrap(tmp_path, exit_code: int) -> str:
    path = tmp_path / f"bwrap-{exit_code}"
    path.write_text(f"#!/bin/sh\nexit {exit_code}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_sandbox_off_is_none_even_where_bwrap_works(tmp_path):
    assert sandbox_for("off", [tmp_path], which=lambda _: fake_bwrap(tmp_path, 0)) is None


def test_sandbox_auto_without_bwrap_or_with_a_bwrap_that_cannot_run_is_none(tmp_path):
    assert sandbox_for("auto", [tmp_path], which=lambda _: None) is None
    assert sandbox_for("auto", [tmp_path], which=lambda _: fake_bwrap(tmp_path, 1)) is None


def test_sandbox_on_without_a_working_bwrap_fails_naming_debians_package(tmp_path):
    with pytest.raises(PermanentError, match="bwrap is not installed.*bubblewrap"):
        sandbox_for("on", [tmp_path], which=lambda _: None)
    with pytest.raises(PermanentError, match="bwrap cannot run here.*bubblewrap"):
        sandbox_for("on", [tmp_path], which=lambda _: fake_bwrap(tmp_path, 1))


@pytest.fixture
def real_sandbox(tmp_path):
    scratch, home = tmp_path / "scratch", tmp_path / "home"
    scratch.mkdir()
    sandbox = sandbox_for("auto", [scratch, home])
    if sandbox is None:
        pytest.skip("bwrap is not installed or cannot run here (no user namespaces in this "
                    "container?): make test-tools installs Debian's bubblewrap")
    return sandbox, scratch


def test_under_the_sandbox_a_build_writes_its_scratch_but_not_outside_it(tmp_path, real_sandbox):
    sandbox, scratch = real_sandbox
    store = tmp_path / "store"
    store.mkdir()
    script = f"echo built > {scratch}/out.txt && echo tampered > {store}/blob"
    lines: list[str] = []
    result = run_build_command(["sh", "-c", script], scratch, build_environment(tmp_path / "home", {}),
                               timeout=60, idle_timeout=60, on_output=lines.append, sandbox=sandbox)
    assert result.exit_code != 0
    assert (scratch / "out.txt").read_text() == "built\n"
    assert not (store / "blob").exists()
    assert any("Read-only file system" in line for line in lines)


def test_under_the_sandbox_the_build_home_is_writable(tmp_path, real_sandbox):
    sandbox, scratch = real_sandbox
    env = build_environment(tmp_path / "home", {})
    result = run_build_command(["sh", "-c", 'echo cached > "$HOME/.cache" && mktemp'], scratch, env,
                               timeout=60, idle_timeout=60, on_output=lambda _: None, sandbox=sandbox)
    assert result.exit_code == 0, result.tail
    assert (tmp_path / "home" / ".cache").read_text() == "cached\n"
    assert result.tail[0].startswith(str(tmp_path / "home" / "tmp"))


def test_a_sandboxed_command_past_its_timeout_is_killed_with_everything_in_its_sandbox(tmp_path, real_sandbox):
    sandbox, scratch = real_sandbox
    marker = f"sluice-sandbox-sleep-{os.getpid()}-{tmp_path.name}"
    env = build_environment(tmp_path / "home", {})
    sleeper = f"{sys.executable} -c 'import time; time.sleep(300)' {marker}"
    result = run_build_command(["sh", "-c", f"{sleeper} & wait"], scratch, env,
                               timeout=1.0, idle_timeout=60, on_output=lambda _: None, sandbox=sandbox)
    assert result.timed_out == "timeout"
    wait_for(lambda: not processes_named(marker), timeout=10, what="the sandbox's sleep to be gone")


def processes_named(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = open(f"/proc/{entry}/cmdline", "rb").read()
            except OSError:
                continue
            if marker.encode() in cmdline and alive(int(entry)):
                found.append(int(entry))
    return found
