"""Tell a complete zstd stream from a truncated one by walking its frame and block headers.

Why: the reader must decompress with bounded output per read (a 32 KB .zst can expand to gigabytes, and
``zstandard``'s ``decompressobj().decompress()`` returns a call's whole output at once), which only
``ZstdDecompressor().stream_reader().read(n)`` offers. But that reader treats an input that stops in the
middle of a frame as a normal end of stream. The zstd format (RFC 8878) makes the end of a frame visible
from its headers alone: each block header says whether it is the last and how many compressed bytes it
has, and the frame header says whether a 4-byte checksum follows. This walker sees the same bytes the
decompressor reads, skips the block contents without decoding them (a few Python operations per block of
up to 128 KiB), and reports whether the stream ended at a frame boundary. Corrupt contents are the
decompressor's to find; the walker only answers "complete or truncated".
"""

from __future__ import annotations

from typing import Optional

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_FCS_SIZES = (0, 2, 4, 8)
_DID_SIZES = (0, 1, 2, 4)


class FrameWalker:
    """Feed it the compressed bytes in order (``feed``); ``complete`` is True only at a frame boundary."""

    def __init__(self) -> None:
        self._pending = bytearray()  # header bytes collected so far
        self._skip = 0  # content bytes still to skip
        self._state = "magic"  # magic | descriptor | header | block | skippable_size
        self._need = 4
        self._checksum = False
        self.error: Optional[str] = None

    @property
    def complete(self) -> bool:
        return self.error is None and self._state == "magic" and not self._pending and self._skip == 0

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        pos, n = 0, len(view)
        while pos < n and self.error is None:
            if self._skip:
                step = min(self._skip, n - pos)
                self._skip -= step
                pos += step
                continue
            take = min(self._need - len(self._pending), n - pos)
            self._pending += view[pos:pos + take]
            pos += take
            if len(self._pending) == self._need:
                header = bytes(self._pending)
                self._pending = bytearray()
                self._advance(header)

    def _advance(self, header: bytes) -> None:
        state = self._state
        if state == "magic":
            if header == ZSTD_MAGIC:
                self._state, self._need = "descriptor", 1
            elif header[1:] == b"\x2a\x4d\x18" and header[0] & 0xF0 == 0x50:
                self._state, self._need = "skippable_size", 4
            else:
                self.error = "not a zstd frame"
        elif state == "skippable_size":
            self._skip = int.from_bytes(header, "little")
            self._state, self._need = "magic", 4
        elif state == "descriptor":
            d = header[0]
            single_segment = bool(d & 0x20)
            self._checksum = bool(d & 0x04)
            fcs = _FCS_SIZES[d >> 6] if (d >> 6) or not single_segment else 1
            rest = (0 if single_segment else 1) + _DID_SIZES[d & 0x03] + fcs
            self._state, self._need = "block", 3
            self._skip = rest
        elif state == "block":
            value = int.from_bytes(header, "little")
            last = value & 1
            kind = (value >> 1) & 3
            size = value >> 3
            if kind == 3:
                self.error = "reserved block type"
                return
            self._skip = 1 if kind == 1 else size  # an RLE block stores one byte
            if last:
                self._skip += 4 if self._checksum else 0
                self._state, self._need = "magic", 4
