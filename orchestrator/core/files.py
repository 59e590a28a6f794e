"""Small files written whole: beside the old one first, then renamed over it, so a reader
(another process, another machine on the shared data_dir) sees the old file or the new one,
never part of one."""
from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def write_whole(path: Path, text: str, mode: int | None = None) -> None:
    """`mode` None: what the umask gives a new file, as open() would."""
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        if mode is not None:
            os.chmod(aside, mode)       # os.open's mode passed through the umask
        os.replace(aside, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(aside)
        raise
