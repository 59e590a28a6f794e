"""A build's output reaches the deployment's log while the build runs: a line followed by a
long silence is not held back until the next line (sluice log --follow shows it)."""
import sys

from orchestrator.building.command import build_environment, run_build_command
from orchestrator.core import events as ev
from orchestrator.deploying.build import BATCH_SECONDS, BuildLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_quiet_command_is_reported_as_quiet_between_its_lines(tmp_path):
    calls: list[str] = []
    code = "import sys, time; print('one', flush=True); time.sleep(1); print('two')"

    result = run_build_command([sys.executable, "-c", code], tmp_path,
                               build_environment(tmp_path / "home", {}), timeout=60, idle_timeout=60,
                               on_output=lambda line: calls.append(f"line {line}"),
                               on_quiet=lambda: calls.append("quiet"))

    assert result.ok
    lines = [c for c in calls if c != "quiet"]
    assert lines == ["line one", "line two"]
    assert "quiet" in calls[calls.index("line one"):calls.index("line two")]


def test_lines_batched_before_a_quiet_spell_are_recorded_once_the_batch_time_has_passed():
    recorded: list[tuple[type, dict]] = []
    clock = Clock()
    log = BuildLog(lambda kind, **fields: recorded.append((kind, fields)), "custom", clock)
    log.line("compiling...")

    log.quiet()                         # just printed: still batching
    assert recorded == []
    clock.now += BATCH_SECONDS
    log.quiet()

    assert recorded == [(ev.BuildOutput, {"step": "custom", "lines": ["compiling..."], "dropped": 0})]
    clock.now += BATCH_SECONDS
    log.quiet()                         # nothing new: nothing recorded
    assert len(recorded) == 1
