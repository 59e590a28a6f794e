"""A zip's entries as a snapshot: every hostile or oversized zip refused naming the entry,
before anything of it is stored."""
from __future__ import annotations

import io
import struct
import zipfile

import pytest

from orchestrator.core.errors import ZipRefused
from orchestrator.releases.snapshots import SnapshotStore
from orchestrator.releases.zip_intake import ZipLimits, snapshot_from_zip

FILES = {"host.json": b'{"version": "2.0"}', "api/index.js": b"module.exports = 1\n"}


def make_zip(entries: list[tuple[str, bytes, int]]) -> bytes:
    """(name, content, unix mode) each, in this order, duplicates kept."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content, mode in entries:
            info = zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0))
            info.create_system, info.external_attr = 3, mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return out.getvalue()


def marked_encrypted(data: bytes, name: str) -> bytes:
    """The zip with `name`'s central directory record flagged encrypted (general purpose
    bit 0), as an encrypting zip tool writes it."""
    patched, at = bytearray(data), 0
    while (at := patched.find(b"PK\x01\x02", at)) >= 0:
        length = struct.unpack_from("<H", patched, at + 28)[0]
        if patched[at + 46:at + 46 + length] == name.encode():
            struct.pack_into("<H", patched, at + 8, struct.unpack_from("<H", patched, at + 8)[0] | 1)
        at += 4
    return bytes(patched)


def files_zip(files: dict[str, bytes], **modes: int) -> bytes:
    return make_zip([(n, c, modes.get(n.replace("/", "_").replace(".", "_"), 0o100644))
                     for n, c in files.items()])


@pytest.fixture
def store(tmp_path):
    return SnapshotStore(tmp_path / "store")


def take(store, tmp_path, data: bytes, limits: ZipLimits = ZipLimits()):
    path = tmp_path / "body.zip"
    path.write_bytes(data)
    return snapshot_from_zip(store, path, limits)


def blobs(store) -> list:
    return [p for p in store.blobs.rglob("*") if p.is_file()]


def test_a_zips_files_become_a_snapshot_with_exec_bits_from_their_modes(store, tmp_path):
    data = make_zip([("host.json", b"{}", 0o100644), ("run.sh", b"#!/bin/sh\n", 0o100755),
                     ("bin/", b"", 0o040755)])

    snapshot = take(store, tmp_path, data)

    files = snapshot.manifest.files
    assert set(files) == {"host.json", "run.sh"}
    assert files["run.sh"].executable and not files["host.json"].executable


def test_the_same_zip_twice_is_the_same_snapshot(store, tmp_path):
    first = take(store, tmp_path, files_zip(FILES))

    again = take(store, tmp_path, files_zip(FILES))

    assert again.id == first.id and not again.fresh


def test_windows_separators_are_folders_and_dot_parts_are_dropped(store, tmp_path):
    data = make_zip([("api\\index.js", b"1", 0), ("./host.json", b"{}", 0)])

    assert set(take(store, tmp_path, data).manifest.files) == {"api/index.js", "host.json"}


@pytest.mark.parametrize("name", ["../escape.txt", "api/../../escape.txt", "/etc/passwd",
                                  "C:/Windows/win.ini", "\\\\server\\share\\x", "..\\escape.txt"])
def test_a_name_climbing_out_or_absolute_is_refused_naming_it_and_nothing_is_stored(store, tmp_path, name):
    with pytest.raises(ZipRefused) as refused:
        take(store, tmp_path, make_zip([("host.json", b"{}", 0o100644), (name, b"x", 0o100644)]))

    assert repr(name) in str(refused.value) and refused.value.status == 400
    assert blobs(store) == []


def test_a_symlink_leaving_the_tree_is_refused_naming_it(store, tmp_path):
    data = make_zip([("host.json", b"{}", 0o100644), ("etc", b"../../../etc", 0o120777)])

    with pytest.raises(ZipRefused, match="'etc' points outside the app"):
        take(store, tmp_path, data)


def test_a_symlink_inside_the_tree_is_kept_as_a_link(store, tmp_path):
    data = make_zip([("host.json", b"{}", 0o100644), ("config.json", b"host.json", 0o120777)])

    assert take(store, tmp_path, data).manifest.links == {"config.json": "host.json"}


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_the_same_name_twice_is_refused(store, tmp_path):
    data = make_zip([("host.json", b"{}", 0o100644), ("host.json", b"{'a': 1}", 0o100644)])

    with pytest.raises(ZipRefused, match="'host.json' appears twice"):
        take(store, tmp_path, data)
    assert blobs(store) == []


def test_names_differing_only_in_case_are_refused_naming_both(store, tmp_path):
    data = make_zip([("Host.json", b"{}", 0o100644), ("host.json", b"{}", 0o100644)])

    with pytest.raises(ZipRefused, match="'host.json' and 'Host.json' differ only in case"):
        take(store, tmp_path, data)


def test_an_encrypted_entry_is_refused(store, tmp_path):
    data = marked_encrypted(make_zip([("host.json", b"{}", 0o100644),
                                      ("secret.txt", b"x", 0o100644)]), "secret.txt")

    with pytest.raises(ZipRefused, match="'secret.txt' is encrypted"):
        take(store, tmp_path, data)


def test_more_entries_than_the_limit_are_refused_with_413(store, tmp_path):
    with pytest.raises(ZipRefused, match="max_zip_entries") as refused:
        take(store, tmp_path, files_zip(FILES), ZipLimits(max_entries=1))
    assert refused.value.status == 413


def test_more_bytes_unzipped_than_the_limit_are_refused_before_any_is_stored(store, tmp_path):
    with pytest.raises(ZipRefused, match="max_unzipped_bytes"):
        take(store, tmp_path, files_zip({"big.bin": b"\0" * 10_000}), ZipLimits(max_unzipped_bytes=9_999))
    assert blobs(store) == []


def test_a_zip_bomb_ratio_is_refused(store, tmp_path):
    bomb = files_zip({"bomb.bin": b"\0" * 5_000_000})        # about 1,000 to 1

    with pytest.raises(ZipRefused, match="max_zip_ratio"):
        take(store, tmp_path, bomb, ZipLimits(max_ratio=100, ratio_floor=1_000_000))
    assert blobs(store) == []


def test_an_entry_inflating_past_what_its_header_declares_is_refused(store, tmp_path):
    data = bytearray(files_zip({"data.bin": b"a" * 50_000}))
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 1_000)     # declared uncompressed size

    with pytest.raises(ZipRefused, match="data.bin"):
        take(store, tmp_path, bytes(data))


def test_a_body_that_is_no_zip_is_refused(store, tmp_path):
    with pytest.raises(ZipRefused, match="not a zip"):
        take(store, tmp_path, b"<html>not a zip</html>")
