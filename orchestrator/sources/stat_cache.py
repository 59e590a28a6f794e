"""Small files read again only when a stat says they may have changed: one system call
instead of three for a file that did not (a local head check reads about ten).

Timestamps are coarse (a kernel tick), so a file written twice within one tick, at the
same size, would stat the same: as git does with its index's "racy" entries, a file whose
mtime or ctime is within RACY_NS of now is never served from the cache, and a later write
always gives it a newer timestamp than the cached one.
"""
from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable

RACY_NS = 2_000_000_000         # beyond any filesystem's timestamp granularity (FAT: 2 s)
CHUNK = 1 << 16


class StatCache:
    def __init__(self, now_ns: Callable[[], int] = time.time_ns, limit: int = 4096):
        self._now_ns, self._limit = now_ns, limit
        self._entries: dict[str, tuple[tuple[int, ...], bytes]] = {}

    def read(self, path: str, follow: bool = True) -> bytes | None:
        """The file's bytes, None when there is none; IsADirectoryError for a folder, and
        OSError for anything else that is not a regular file (a symbolic link too, unless
        `follow`)."""
        try:
            st = os.stat(path) if follow else os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder", path)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if (hit := self._entries.get(path)) is not None and hit[0] == key:
            return hit[1]
        data = read_file(path, follow)
        if self._now_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > RACY_NS:
            if len(self._entries) >= self._limit:
                self._entries.clear()
            self._entries[path] = (key, data)
        return data

    def clear(self) -> None:
        self._entries.clear()


def read_file(path: str | bytes, follow: bool = True) -> bytes:
    """A file's bytes by plain os calls (pathlib and io cost more than the reading here); a
    symbolic link is an OSError unless `follow`, a fifo reads empty instead of blocking."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW))
    try:
        chunks = [os.read(fd, CHUNK)]
        while len(chunks[-1]) == CHUNK:     # a file reads short only at its end
            chunks.append(os.read(fd, CHUNK))
        return b"".join(chunks)
    finally:
        os.close(fd)
