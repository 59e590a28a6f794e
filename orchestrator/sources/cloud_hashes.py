"""The content hashes the clouds publish for their files, computed here to verify downloads.

Dropbox `content_hash`: sha256 of the concatenated sha256 digests of 4 MiB blocks, hex.
OneDrive `quickXorHash`: a 160-bit register each byte is XORed into, shifted by 11 bits more
than the byte before it (wrapping), then the data length XORed into its last 8 bytes; base64.
Both are streaming: `update()` any number of times, then `hexdigest()` / `b64digest()`.
"""
from __future__ import annotations

import base64
import hashlib

DROPBOX_BLOCK = 4 * 1024 * 1024


class DropboxContentHash:
    def __init__(self) -> None:
        self._digests = hashlib.sha256()
        self._block = hashlib.sha256()
        self._in_block = 0

    def update(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            take = min(len(view), DROPBOX_BLOCK - self._in_block)
            self._block.update(view[:take])
            self._in_block += take
            view = view[take:]
            if self._in_block == DROPBOX_BLOCK:
                self._close_block()

    def _close_block(self) -> None:
        self._digests.update(self._block.digest())
        self._block, self._in_block = hashlib.sha256(), 0

    def hexdigest(self) -> str:
        digests = self._digests.copy()
        if self._in_block:
            digests.update(self._block.digest())
        return digests.hexdigest()


class QuickXorHash:
    WIDTH, SHIFT = 160, 11

    def __init__(self) -> None:
        # 11 and 160 are coprime, so byte i lands at (11 i) mod 160 and bytes 160 apart share a
        # position: one register per position class, XORed in by the bulk bytes operations.
        self._lanes = [0] * self.WIDTH           # lane k: XOR of the bytes i with i % 160 == k
        self._length = 0

    def update(self, data: bytes) -> None:
        start = self._length % self.WIDTH
        for lane in range(self.WIDTH):
            first = (lane - start) % self.WIDTH
            if first < len(data):
                self._lanes[lane] ^= _xor_all(data[first::self.WIDTH])
        self._length += len(data)

    def digest(self) -> bytes:
        register = 0
        for lane, value in enumerate(self._lanes):
            if value:
                shift = lane * self.SHIFT % self.WIDTH
                wide = value << shift
                register ^= (wide | (wide >> self.WIDTH)) & ((1 << self.WIDTH) - 1)
        out = bytearray(register.to_bytes(20, "little"))
        for i, b in enumerate(self._length.to_bytes(8, "little")):
            out[12 + i] ^= b
        return bytes(out)

    def b64digest(self) -> str:
        return base64.b64encode(self.digest()).decode()


def _xor_all(data: bytes) -> int:
    """XOR of all the bytes: the data as one integer, folded in halves down to one byte."""
    value, size = int.from_bytes(data, "little"), len(data)
    while size > 1:
        half = (size + 1) // 2
        value = (value >> (8 * half)) ^ (value & ((1 << (8 * half)) - 1))
        size = half
    return value
