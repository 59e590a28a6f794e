"""What Dropbox and OneDrive sources share: content hashes, names, listings, paths."""
from __future__ import annotations

import base64
import hashlib
import os

import pytest

from orchestrator.core.errors import InvalidAppLayout
from orchestrator.sources.cloud_folder import (
    Listing,
    ListingFile,
    RemoteFile,
    check_case_collisions,
    check_names,
    relative_name,
)
from orchestrator.sources.cloud_hashes import DropboxContentHash, QuickXorHash
from orchestrator.sources.onedrive import _path


def quickxor(data: bytes, piece: int | None = None) -> str:
    h = QuickXorHash()
    for i in range(0, len(data), piece or max(len(data), 1)):
        h.update(data[i:i + (piece or len(data))])
    return h.b64digest()


def quickxor_by_the_definition(data: bytes) -> str:
    register = 0
    for i, byte in enumerate(data):
        wide = byte << (i * 11 % 160)
        register ^= (wide | (wide >> 160)) & ((1 << 160) - 1)
    out = bytearray(register.to_bytes(20, "little"))
    for i, b in enumerate(len(data).to_bytes(8, "little")):
        out[12 + i] ^= b
    return base64.b64encode(bytes(out)).decode()


@pytest.mark.parametrize("data, expected", [
    (b"", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
    (b"\x4a", "SgAAAAAAAAAAAAAAAQAAAAAAAAA="),
    (b"\xb5\xb4", "taAFAAAAAAAAAAAAAgAAAAAAAAA=")])
def test_quickxorhash_matches_the_published_vectors(data, expected):
    assert quickxor(data) == expected


@pytest.mark.parametrize("size", [159, 160, 161, 4096, 100_003])
def test_quickxorhash_in_any_pieces_matches_its_definition(size):
    data = os.urandom(size)
    assert quickxor(data) == quickxor(data, 7) == quickxor(data, 4096) == quickxor_by_the_definition(data)


def test_dropbox_content_hash_hashes_4_mib_blocks_then_their_digests():
    data = os.urandom(9 * 1024 * 1024 + 17)
    blocks = [data[i:i + 4 * 1024 * 1024] for i in range(0, len(data), 4 * 1024 * 1024)]
    expected = hashlib.sha256(b"".join(hashlib.sha256(b).digest() for b in blocks)).hexdigest()
    h = DropboxContentHash()
    for i in range(0, len(data), 1_000_003):
        h.update(data[i:i + 1_000_003])
    empty = DropboxContentHash()
    assert h.hexdigest() == expected
    assert empty.hexdigest() == hashlib.sha256(b"").hexdigest()


def test_names_below_the_folder_are_made_relative_and_others_are_skipped():
    assert relative_name("/Apps/Site/css/a.css", "apps/site") == "css/a.css"
    assert relative_name("/Apps/Other/a.css", "apps/site") is None
    assert relative_name("/Apps/Site", "apps/site") is None
    assert relative_name("/index.html", "") == "index.html"


@pytest.mark.parametrize("name", ["../etc/passwd", "a/./b", "a//b", "nul\0x", "/abs"])
def test_names_that_could_leave_or_corrupt_a_release_fail_naming_the_entry(name):
    with pytest.raises(InvalidAppLayout, match="entry"):
        check_names({"1": RemoteFile(name, "h", 1, "1")}, "dropbox /site")


def test_entries_differing_only_by_case_fail_naming_both():
    files = {"1": RemoteFile("css/Site.css", "h1", 1, "1"), "2": RemoteFile("CSS/other.css", "h2", 1, "2")}
    with pytest.raises(InvalidAppLayout, match="'CSS' and 'css'"):
        check_case_collisions(files, "onedrive /site")
    check_case_collisions({"1": files["1"]}, "onedrive /site")


def test_a_listing_revision_depends_on_names_and_contents_only(tmp_path):
    a = Listing("c1", {"x": RemoteFile("a.txt", "h1", 1, "x"), "y": RemoteFile("b.txt", "h2", 1, "y")})
    b = Listing("c2", {"q": RemoteFile("b.txt", "h2", 5, "q"), "p": RemoteFile("a.txt", "h1", 1, "p")})
    c = Listing("c1", {"x": RemoteFile("a.txt", "h9", 1, "x"), "y": RemoteFile("b.txt", "h2", 1, "y")})
    assert a.revision() == b.revision() != c.revision()
    stored = ListingFile(tmp_path, "key", "watch")
    stored.save(a)
    assert stored.load() == a and ListingFile(tmp_path, "other", "watch").load() == Listing()


def test_onedrive_paths_follow_parents_so_a_moved_folder_moves_its_files_and_orphans_drop():
    items = {"root": {"name": "root", "parent": None}, "d": {"name": "new-name", "parent": "root"},
             "f": {"name": "a.txt", "parent": "d"}, "o": {"name": "lost.txt", "parent": "gone"}}
    paths = {"root": ""}
    assert _path("f", items, paths) == "new-name/a.txt"
    assert _path("o", items, paths) is None


def test_a_download_that_does_not_hash_to_the_clouds_hash_is_refused_naming_the_file():
    from orchestrator.core.errors import TransientError
    from orchestrator.sources.cloud_folder import _fetch_verified

    class Sha256:
        def __init__(self):
            self.h = hashlib.sha256()

        def update(self, data):
            self.h.update(data)

        def result(self):
            return self.h.hexdigest()

    file = RemoteFile("css/site.css", hashlib.sha256(b"body {}").hexdigest(), 7, "id:1")
    with _fetch_verified(file, "dropbox /site", lambda f: iter([b"body ", b"{}"]), Sha256()) as ok:
        assert ok.read() == b"body {}"
    with pytest.raises(TransientError, match="'css/site.css' arrived with content hash"):
        _fetch_verified(file, "dropbox /site", lambda f: iter([b"tampered"]), Sha256())
