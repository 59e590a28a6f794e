"""A real app host for tests: serves the LIVE release the way a running server does. At start
and on SIGHUP it resolves the target symlink and pins that release; until the next SIGHUP it
goes on serving the pinned release even if the symlink has moved (which is why `activate`
exists). What it answers comes from the pinned release's files, so a test makes a good or a
broken revision by committing files:

- GET /health: the status in `<release>/status` (default 200) with the body of
  `<release>/version` (default empty). `status` may hold several statuses: the n-th /health
  since the pin answers the n-th, the last one repeating ("200 200 500": healthy at first,
  then failing, with no clock involved).
- GET /<path>: the release's file, 404 when absent.
- No release yet (no target): 503.

Every answer says which release answered (X-Release: its folder's name, or none) and how many
SIGHUPs the process took (X-Reloads). SIGTERM stops it cleanly (its pidfile removed), and a
restart by command is the same command line again: `--replace` stops the running host the
pidfile names first, `--detach` returns once the new one listens (for an `activate` command).
Stdlib only, so it also runs as a script by its path, from any directory.

    python tests/servers/release_host.py --target DIR --pidfile F --port-file F2
        [--port 0] [--replace] [--detach] [--log F3]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve()


class Pin:
    """The release being served and what the host has counted since."""

    def __init__(self, target: Path):
        self.target, self.reloads = target, 0
        self.release: Path | None = None
        self.health_answers = 0
        self.repin()

    def repin(self) -> None:
        resolved = Path(os.path.realpath(self.target))
        self.release = resolved if resolved.is_dir() else None
        self.health_answers = 0

    def reload(self, *_) -> None:
        self.reloads += 1
        self.repin()

    def health_status(self, release: Path) -> int:
        statuses = _read(release / "status").split() or ["200"]
        self.health_answers += 1
        return int(statuses[min(self.health_answers, len(statuses)) - 1])


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return ""


class _Handler(BaseHTTPRequestHandler):
    pin: Pin

    def do_GET(self) -> None:       # noqa: N802 (http.server's name)
        release = self.pin.release
        if release is None:
            return self._answer(503, b"no release is live\n", None)
        if self.path.split("?")[0] == "/health":
            return self._answer(self.pin.health_status(release), _read(release / "version").encode(), release)
        wanted = Path(os.path.realpath(release / self.path.split("?")[0].lstrip("/")))
        if not wanted.is_relative_to(release) or not wanted.is_file():
            return self._answer(404, b"not found\n", release)
        self._answer(200, wanted.read_bytes(), release)

    def _answer(self, status: int, body: bytes, release: Path | None) -> None:
        self.send_response(status)
        self.send_header("X-Release", release.name if release else "none")
        self.send_header("X-Reloads", str(self.pin.reloads))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def serve(target: Path, port: int, pidfile: Path, port_file: Path) -> None:
    pin = Pin(target)
    handler = type("Handler", (_Handler,), {"pin": pin})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    signal.signal(signal.SIGHUP, pin.reload)
    signal.signal(signal.SIGTERM, lambda *_: _stop(server))
    _write_atomically(pidfile, str(os.getpid()))
    _write_atomically(port_file, str(server.server_address[1]))
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()
        with contextlib.suppress(FileNotFoundError):
            pidfile.unlink()


def _stop(server: ThreadingHTTPServer) -> None:
    # shutdown() waits for serve_forever, which runs in this (the main) thread: ask from another
    threading.Thread(target=server.shutdown, daemon=True).start()


def _write_atomically(path: Path, text: str) -> None:
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text(text)
    os.replace(scratch, path)


def running_pid(pidfile: Path) -> int | None:
    """The pid the file names, if that process is a release host still running: a zombie is
    not, and a stale file's pid reused by another program is not ours to stop."""
    try:
        pid = int(pidfile.read_text())
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        ours = HERE.name.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return pid if ours and state not in ("Z", "X") else None


def stop(pidfile: Path, timeout: float = 10.0) -> None:
    """SIGTERM to the host the pidfile names, and wait until it has gone (SIGKILL after
    `timeout`), so its port is free for the next one."""
    pid = running_pid(pidfile)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while running_pid(pidfile) == pid:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)


def command(target: Path, pidfile: Path, port_file: Path, port: int = 0, *, replace: bool = False,
            detach: bool = False, log: Path | None = None) -> list[str]:
    """The command line that starts a host (the same, with replace=True, restarts it)."""
    return [sys.executable, str(HERE), "--target", str(target), "--pidfile", str(pidfile),
            "--port-file", str(port_file), "--port", str(port),
            *(["--replace"] if replace else []), *(["--detach"] if detach else []),
            *(["--log", str(log)] if log else [])]


class ReleaseHost:
    """A test's handle on one host: start, reload (SIGHUP), restart by command, stop. It keeps
    its port across restarts, so a health URL stays true."""

    def __init__(self, target: Path, folder: Path):
        self.target, self.folder = Path(target), Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.pidfile, self.port_file = self.folder / "host.pid", self.folder / "host.port"
        self.log = self.folder / "host.log"
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return running_pid(self.pidfile)

    def restart_command(self) -> list[str]:
        """argv of an `activate` command that restarts this host on its port."""
        return command(self.target, self.pidfile, self.port_file, self.port, replace=True,
                       detach=True, log=self.log)

    def start(self) -> ReleaseHost:
        done = subprocess.run(self.restart_command(), capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"the release host did not start: {done.stderr}{_read(self.log)}")
        self.port = int(self.port_file.read_text())
        return self

    def reload(self) -> None:
        pid = self.pid
        assert pid is not None, "the release host is not running"
        os.kill(pid, signal.SIGHUP)

    def stop(self) -> None:
        stop(self.pidfile)

    def __enter__(self) -> ReleaseHost:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _detached(argv: list[str], port_file: Path, log: Path | None) -> int:
    """Start the host in a session of its own (so it outlives the command and its process
    group) and return once it listens; the exit code says whether it does."""
    with contextlib.suppress(FileNotFoundError):
        port_file.unlink()
    out = open(log or os.devnull, "ab")
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                             start_new_session=True)
    deadline = time.monotonic() + 20
    while not port_file.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            print(f"release host did not start (see {log})", file=sys.stderr)
            return 1
        time.sleep(0.02)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="release_host", description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", type=Path, required=True)
    parser.add_argument("--pidfile", type=Path, required=True)
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--replace", action="store_true")
    parser.add_argument("--detach", action="store_true")
    parser.add_argument("--log", type=Path)
    args = parser.parse_args(argv)
    if args.replace:
        stop(args.pidfile)
    if args.detach:
        rest = [a for a in argv if a not in ("--replace", "--detach")]
        return _detached([sys.executable, str(HERE), *rest], args.port_file, args.log)
    serve(args.target, args.port, args.pidfile, args.port_file)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
