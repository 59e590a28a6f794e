"""Where an app's older events go when its Redis stream is trimmed to a tail:
`{data_dir}/archive/<app>/<first-id>.jsonl`, one file per trim, written whole (aside, fsynced,
renamed, the folder fsynced) and never changed after, so a crash leaves a file whole or absent.

Each line is one event as the stream held it (`id`, `n`, `type`, `schema`, `data`) and the
SHA-256 of those fields (`sha256`, over their sorted-keys JSON): a line that no longer matches
is an ArchiveCorrupt naming the file and line, never a silently different history.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path

import orjson

from orchestrator.core.errors import ArchiveCorrupt

Fields = dict[str, str]
Entry = tuple[str, Fields]          # (entry id, fields: n, type, schema, data)


def id_key(entry_id: str) -> tuple[int, int]:
    """A stream entry id ("1714564800000-3") as what orders it."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class EventArchive:
    def __init__(self, root: Path):
        self.root = Path(root)

    def write(self, app: str, entries: Sequence[Entry]) -> None:
        """Archive entries (oldest first, all newer than what the app's archive holds)."""
        if not entries:
            return
        folder = self.root / app
        folder.mkdir(parents=True, exist_ok=True)
        lines = b"".join(_line(entry_id, fields) for entry_id, fields in entries)
        path = folder / f"{entries[0][0]}.jsonl"
        aside = folder / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
        try:
            with open(aside, "xb") as out:
                out.write(lines)
                out.flush()
                os.fsync(out.fileno())
            os.replace(aside, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(aside)
            raise
        _fsync_folder(folder)

    def last_id(self, app: str) -> str | None:
        """The id of the newest archived entry of the app, None if none is."""
        files = self._files(app)
        newest = deque(self._lines(files[-1]), maxlen=1) if files else ()
        return newest[0][0] if newest else None

    def entries(self, app: str, after_id: str | None = None) -> Iterator[Entry]:
        """The app's archived entries, oldest first, after `after_id` if given."""
        after = id_key(after_id) if after_id else (-1, -1)
        files = self._files(app)
        # a file whose successor starts at or before `after` holds nothing after it
        starts = [id_key(f.name.removesuffix(".jsonl")) for f in files]
        for i, path in enumerate(files):
            if i + 1 < len(files) and starts[i + 1] <= after:
                continue
            yield from (e for e in self._lines(path) if id_key(e[0]) > after)

    def entries_backwards(self, app: str, before_id: str | None = None) -> Iterator[Entry]:
        """The app's archived entries, newest first, older than `before_id` if given."""
        before = id_key(before_id) if before_id else None
        for path in reversed(self._files(app)):
            if before is not None and id_key(path.name.removesuffix(".jsonl")) >= before:
                continue
            yield from (e for e in reversed(list(self._lines(path)))
                        if before is None or id_key(e[0]) < before)

    def _files(self, app: str) -> list[Path]:
        folder = self.root / app
        if not folder.is_dir():
            return []
        files = [p for p in folder.iterdir() if p.suffix == ".jsonl" and not p.name.startswith(".")]
        return sorted(files, key=lambda p: id_key(p.name.removesuffix(".jsonl")))

    def _lines(self, path: Path) -> Iterator[Entry]:
        with open(path, "rb") as lines:
            for number, line in enumerate(lines, 1):
                yield _entry(path, number, line)


def _line(entry_id: str, fields: Fields) -> bytes:
    record = {"id": entry_id, **{k: fields[k] for k in ("n", "type", "schema", "data")}}
    return orjson.dumps({**record, "sha256": _digest(record)}) + b"\n"


def _entry(path: Path, number: int, line: bytes) -> Entry:
    try:
        record = orjson.loads(line)
        digest = record.pop("sha256")
        entry_id = record.pop("id")
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise ArchiveCorrupt(f"{path}:{number}: not an archived event") from None
    if digest != _digest({"id": entry_id, **record}):
        raise ArchiveCorrupt(f"{path}:{number}: checksum mismatch: the event differs from what was archived")
    return entry_id, {k: str(v) for k, v in record.items()}


def _digest(record: dict) -> str:
    return hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
