"""A request body saved to a scratch file as it streams, refused (413) the moment it passes
its limit: a declared Content-Length over it is refused before a byte is read, and a chunked
body is counted as it comes, so an oversized one never lands on disk whole.

The scratch file sits in the store's tmp folder, whose files a crash leaves behind are
collected with the store (releases/retention.py).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import Request
from starlette.exceptions import HTTPException


@contextlib.asynccontextmanager
async def saved_body(request: Request, folder: Path, limit: int, setting: str) -> AsyncIterator[Path]:
    """The body in a file under `folder`, removed when the block ends."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, _too_large(int(declared), limit, setting))
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=folder, prefix="upload-", suffix=".zip")
    try:
        with os.fdopen(fd, "wb") as out:
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise HTTPException(413, _too_large(size, limit, setting, more=True))
                out.write(chunk)
        yield Path(name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def _too_large(size: int, limit: int, setting: str, more: bool = False) -> str:
    return (f"the body is {'over ' if more else ''}{size} bytes; at most {limit} are taken "
            f"({setting})")
