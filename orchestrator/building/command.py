"""One build command run to its end or killed: its own process group, a minimal environment,
output streamed line by line, a whole-build `timeout` and an `idle_timeout`, and optionally
inside bubblewrap (`bwrap`), where everything but the scratch copy and the build home is
read-only."""
from __future__ import annotations

import functools
import os
import selectors
import shutil
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.core.errors import BuildFailed
from orchestrator.runtime.processes import kill_group

MAX_LINE = 4096             # a build printing megabytes without a newline must not hold them
TAIL_LINES = 50
POLL = 0.2                  # how often a quiet build's leader is looked at (its exit, deadlines)
DEFAULT_LANG = "C.UTF-8"
SANDBOX_PACKAGE = "bubblewrap"


@dataclass
class CommandResult:
    exit_code: int | None           # None: killed for a timeout (negative: killed by a signal)
    timed_out: str | None           # "timeout" | "idle_timeout" | None
    tail: list[str]                 # the last TAIL_LINES lines of output
    seconds: float

    @property
    def ok(self) -> bool:
        return self.timed_out is None and self.exit_code == 0


@dataclass
class Sandbox:
    """bubblewrap around a command: the whole filesystem read-only but `writable`, `hidden`
    folders empty and hidden files blank (Sluice's data dir and config: the store, other apps,
    the Redis password; `writable` and `readable` paths inside them are seen again, these
    read-only), its own PID namespace
    (its processes die with it), the network as the host's (package indexes)."""
    writable: list[Path]
    bwrap: str = "bwrap"
    hidden: list[Path] = field(default_factory=list)
    readable: list[Path] = field(default_factory=list)

    def wrap(self, argv: list[str]) -> list[str]:
        return [*self.prefix(), "--", *argv]

    def prefix(self) -> list[str]:
        hide = [arg for path in self.hidden if path.exists()
                for arg in (("--tmpfs", str(path)) if path.is_dir() else ("--ro-bind", "/dev/null", str(path)))]
        shown = [arg for path in self.readable for arg in ("--ro-bind", str(path), str(path))]
        binds = [arg for path in self.writable for arg in ("--bind", str(path), str(path))]
        return [self.bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", *hide, *shown, *binds,
                "--unshare-pid", "--die-with-parent"]


def sandbox_for(mode: str, writable: list[Path],
                which: Callable[[str], str | None] = shutil.which,
                hidden: list[Path] | None = None,
                readable: list[Path] | None = None) -> Sandbox | None:
    """`build.sandbox`: "off" none; "auto" bwrap where it is installed and works here (a
    container without user namespaces may refuse it); "on" bwrap or BuildFailed."""
    if mode == "off":
        return None
    bwrap = which("bwrap")
    if bwrap and _bwrap_works(bwrap):
        return Sandbox(list(writable), bwrap, list(hidden or []), list(readable or []))
    if mode == "on":
        why = "is not installed" if not bwrap else "cannot run here (no user namespaces?)"
        raise BuildFailed(f"build.sandbox is on but bwrap {why}: install Debian's "
                             f"{SANDBOX_PACKAGE} package, or set build.sandbox to auto or off")
    return None


@functools.cache
def _bwrap_works(bwrap: str) -> bool:
    """Probed once per process with the very options builds get, so a bwrap that can make
    the mounts but not the PID namespace (some containers) counts as not working."""
    try:
        done = subprocess.run([*Sandbox([], bwrap).prefix(), "--", "true"],
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def build_environment(home: Path, extra: Mapping[str, str],
                      base: Mapping[str, str] = os.environ) -> dict[str, str]:
    """What a build sees of the environment: PATH and LANG from `base`, HOME the app's build
    home, TMPDIR inside it (made here), then `extra` (build.env, the step's own variables).
    Nothing else of `base` passes: it holds Sluice's settings, tokens and passwords."""
    tmp = Path(home) / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = {"PATH": base.get("PATH") or os.defpath, "LANG": base.get("LANG") or DEFAULT_LANG,
           "HOME": str(home), "TMPDIR": str(tmp)}
    env.update(extra)
    return env


def run_build_command(argv: list[str], cwd: Path, env: dict[str, str], *, timeout: float,
                      idle_timeout: float, on_output: Callable[[str], None],
                      sandbox: Sandbox | None = None,
                      clock: Callable[[], float] = time.monotonic,
                      on_quiet: Callable[[], None] | None = None) -> CommandResult:
    """Run `argv` in `cwd` until it exits, or kill its whole process group once `timeout`
    seconds have passed or `idle_timeout` seconds went by without a line. Whatever the
    leader left running in its group is killed when it exits too. `on_quiet` is called
    whenever POLL seconds pass without output: a caller batching lines sends them then, so
    a line followed by a long silence is not held back."""
    started = clock()
    try:
        proc = subprocess.Popen(sandbox.wrap(argv) if sandbox else argv, cwd=cwd, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        raise BuildFailed(f"the build cannot run {argv[0]!r} in {cwd}: {exc.strerror}") from None
    watch = _Watch(started + timeout, idle_timeout, clock)
    lines = _Lines(on_output, on_quiet)
    try:
        timed_out = _pump(proc, watch, lines)
    finally:
        kill_group(proc)
        assert proc.stdout is not None
        proc.stdout.close()
    lines.flush()
    return CommandResult(None if timed_out else proc.returncode, timed_out,
                         list(lines.tail), clock() - started)


@dataclass
class _Watch:
    deadline: float
    idle_timeout: float
    clock: Callable[[], float]
    last_output: float = field(init=False)

    def __post_init__(self) -> None:
        self.last_output = self.clock()

    def heard(self) -> None:
        self.last_output = self.clock()

    def expired(self) -> str | None:
        now = self.clock()
        if now >= self.deadline:
            return "timeout"
        if now - self.last_output >= self.idle_timeout:
            return "idle_timeout"
        return None

    def wait_for(self) -> float:
        now = self.clock()
        return max(0.0, min(POLL, self.deadline - now, self.last_output + self.idle_timeout - now))


def _pump(proc: subprocess.Popen, watch: _Watch, lines: _Lines) -> str | None:
    """Hand on output until the pipe closes, or the leader has exited and nothing more is
    ready (a background child may hold the pipe open), or a deadline passes (a timeout
    only while the leader runs)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            exited = proc.poll() is not None
            if selector.select(0 if exited else watch.wait_for()):
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    return _until_exit(proc, watch)
                lines.feed(chunk)
                watch.heard()
            elif exited:
                return None
            else:
                lines.quiet()
            if (expired := watch.expired()) is not None:
                return None if exited else expired


def _until_exit(proc: subprocess.Popen, watch: _Watch) -> str | None:
    """The pipe closed, which a leader does as it exits: let it finish exiting (else the
    group's kill lands first and an exit 0 reads as -9), unless a deadline passes."""
    while True:
        try:
            proc.wait(timeout=watch.wait_for())
            return None
        except subprocess.TimeoutExpired:
            if (expired := watch.expired()) is not None:
                return expired


class _Lines:
    """Bytes to lines: each line given to `on_output` as it completes, cut at MAX_LINE bytes
    (the rest of an overlong line dropped), the last TAIL_LINES kept."""

    def __init__(self, on_output: Callable[[str], None], on_quiet: Callable[[], None] | None = None):
        self.on_output, self.on_quiet = on_output, on_quiet
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.pending = bytearray()
        self.dropping = False

    def feed(self, chunk: bytes) -> None:
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            self._add(chunk[start:end])
            self._emit()
            self.dropping = False
            start = end + 1
        self._add(chunk[start:])
        if len(self.pending) >= MAX_LINE:
            self._emit()
            self.dropping = True

    def flush(self) -> None:
        if self.pending:
            self._emit()

    def quiet(self) -> None:
        if self.on_quiet is not None:
            self.on_quiet()

    def _add(self, part: bytes) -> None:
        if not self.dropping:
            self.pending += part[:MAX_LINE - len(self.pending)]

    def _emit(self) -> None:
        if self.dropping:
            return
        line = self.pending.decode(errors="replace").rstrip("\r")
        self.pending.clear()
        self.tail.append(line)
        self.on_output(line)
