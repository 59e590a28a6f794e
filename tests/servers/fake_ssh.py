"""An ssh client for tests: connections to the host `ssh.sluice.test` run the remote command
(git-upload-pack, hg serve --stdio) locally, as sshd would, and record the arguments in
`ssh.log` beside the identity file given with -i; every other host goes to the real ssh.
No sshd runs on the build machines, and the sources' ssh plumbing is what is under test.
While a file named `hold` lies beside the identity file, connections wait before running
the command: a test holds a fetch in flight with it (tests/faults/test_lost_worker.py)."""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

HOST = "ssh.sluice.test"
WITH_VALUE = set("bcDEeFIiJLlmOopQRSWw")


def split(argv: list[str]) -> tuple[dict[str, list[str]], str, list[str]]:
    """(options, destination host, remote command words) of an OpenSSH command line."""
    options: dict[str, list[str]] = {}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        flag = argv[i][1]
        if flag in WITH_VALUE:
            value = argv[i][2:] or argv[i + 1]
            i += 1 if argv[i][2:] else 2
            options.setdefault(flag, []).append(value)
        else:
            options.setdefault(flag, []).append("")
            i += 1
    return options, argv[i].rpartition("@")[2], argv[i + 1:]


def real_ssh() -> str:
    # resolved: run as bin/../fake_ssh.py, an unresolved bin/.. matched nothing in PATH, and
    # the wrapper exec'd itself for ever
    here = (Path(__file__).resolve().parent / "bin").resolve()
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if p and Path(p).resolve() != here)
    return shutil.which("ssh", path=path) or "/usr/bin/ssh"


def main(argv: list[str]) -> None:
    options, host, command = split(argv)
    if host != HOST:
        os.execv(real_ssh(), ["ssh", *argv])
    for key in options.get("i", []):
        with open(Path(key).parent / "ssh.log", "a") as log:
            log.write(" ".join(argv) + "\n")
        while (Path(key).parent / "hold").exists():
            time.sleep(0.02)
    remote = " ".join(command)
    if remote.startswith("hg "):
        remote = str(Path(sys.executable).parent / "hg") + remote[2:]
    os.execvp("sh", ["sh", "-c", remote])


if __name__ == "__main__":
    main(sys.argv[1:])
