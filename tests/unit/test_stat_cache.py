"""The stat cache serves a file from memory only when a stat proves it unchanged."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager

import pytest

from orchestrator.sources.stat_cache import RACY_NS, StatCache

_opened: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if _opened is not None and event == "open":
        _opened.append(str(args[0]))


sys.addaudithook(_audit)


@contextmanager
def opened():
    """The files opened within the block."""
    global _opened
    _opened = seen = []
    try:
        yield seen
    finally:
        _opened = None


def long_after(path) -> StatCache:
    """A cache whose clock reads well past the file's last change."""
    return StatCache(now_ns=lambda: os.stat(path).st_ctime_ns + 10 * RACY_NS)


def test_an_unchanged_file_is_read_once(tmp_path):
    (tmp_path / "config").write_bytes(b"[core]\n")
    cache = long_after(tmp_path / "config")

    with opened() as files:
        first, second = cache.read(str(tmp_path / "config")), cache.read(str(tmp_path / "config"))

    assert first == second == b"[core]\n"
    assert files == [str(tmp_path / "config")]


def test_a_file_changed_within_the_racy_window_is_read_every_time(tmp_path):
    # a second write in the same timestamp tick, at the same size, would stat the same
    (tmp_path / "ref").write_bytes(b"a" * 40)
    cache = StatCache(now_ns=lambda: os.stat(tmp_path / "ref").st_ctime_ns + RACY_NS // 2)

    with opened() as files:
        cache.read(str(tmp_path / "ref"))
        cache.read(str(tmp_path / "ref"))

    assert len(files) == 2


def test_a_file_replaced_or_rewritten_is_read_again(tmp_path):
    path = tmp_path / "ref"
    path.write_bytes(b"a" * 40)
    cache = StatCache(now_ns=lambda: os.stat(path).st_ctime_ns + 10 * RACY_NS)
    cache.read(str(path))

    (tmp_path / "ref.lock").write_bytes(b"b" * 40)
    (tmp_path / "ref.lock").rename(path)            # as git writes a ref
    replaced = cache.read(str(path))
    with open(path, "r+b") as rewrite:              # in place, its mtime put back
        rewrite.write(b"c" * 40)
    os.utime(path, ns=(0, 0))
    rewritten = cache.read(str(path))

    assert (replaced, rewritten) == (b"b" * 40, b"c" * 40)


def test_a_missing_file_is_none_a_folder_and_an_unfollowed_link_are_errors(tmp_path):
    cache = StatCache()
    (tmp_path / "target").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "target")

    assert cache.read(str(tmp_path / "missing")) is None
    assert cache.read(str(tmp_path / "target" / "below")) is None
    assert cache.read(str(tmp_path / "link")) == b"x"
    with pytest.raises(IsADirectoryError):
        cache.read(str(tmp_path))
    with pytest.raises(OSError):
        cache.read(str(tmp_path / "link"), follow=False)
