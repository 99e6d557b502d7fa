"""The bytes a MAT v5 reader may decode: one :class:`Budget` per file, and each element's body as a :class:`Source`.

A :class:`Source` hands out the bytes of one element, a slice of the file or a zlib stream told never to
inflate past the size the element declares; :mod:`.mat5` charges every inflate and copy to the file's
:class:`Budget` before it happens. Both refuse with a one-line :class:`~binexport.errors.InputError`.
"""

from __future__ import annotations

import zlib

from binexport.errors import InputError

_CHUNK = 1 << 16  # compressed bytes fed to zlib at a time


class Budget:
    """Bytes a read may still decode; every inflate and copy is charged here before it happens."""

    def __init__(self, label: str, limit: int, rule: str = "") -> None:
        self.label, self.limit, self.used, self.rule = label, limit, 0, rule

    def charge(self, n: int, what: str) -> None:
        if n < 0 or self.used + n > self.limit:
            raise InputError(
                f"{self.label}: {what} declares {n:,} bytes of data; with {self.used:,} already "
                f"decoded that passes the {self.limit:,} bytes this file can honestly hold{self.rule}; "
                "the file is damaged or hostile"
            )
        self.used += n


class Source:
    """Bytes of one element body: a slice of the file, or a zlib stream that never yields past its cap."""

    def __init__(self, label: str, body: memoryview, compressed: bool, cap: int) -> None:
        self.label, self.body, self.compressed, self.cap = label, body, compressed, cap
        self.pos = 0  # bytes of output handed out
        self._in = 0  # compressed bytes fed
        self._z = zlib.decompressobj() if compressed else None

    def read(self, n: int, what: str) -> bytes:
        if n > self.cap - self.pos:
            raise InputError(
                f"{self.label}: {what} needs {n:,} bytes where {self.cap - self.pos:,} remain "
                "in its element; the file is truncated or damaged"
            )
        if self._z is None:
            out = bytes(self.body[self.pos : self.pos + n])
        else:
            parts, got = [], 0
            while got < n:
                data = self._z.unconsumed_tail or self.body[self._in : self._in + _CHUNK]
                if not self._z.unconsumed_tail:
                    self._in += len(data)
                if not len(data) or self._z.eof:
                    break
                try:
                    piece = self._z.decompress(data, n - got)
                except zlib.error as e:
                    raise InputError(f"{self.label}: {what}: its zlib stream is damaged ({e})") from None
                parts.append(piece)
                got += len(piece)
            out = b"".join(parts)
        if len(out) != n:
            raise InputError(
                f"{self.label}: {what} needs {n:,} bytes, its element holds {len(out):,}; "
                "the file is truncated or damaged"
            )
        self.pos += n
        return out

    def finish(self, what: str) -> None:
        """A compressed element must end exactly where its matrix does (no hidden bytes behind it)."""
        if self._z is None:
            return
        rest = bytes(self._z.unconsumed_tail) + bytes(self.body[self._in :])  # the file bounds it
        self._in = len(self.body)
        extra = b""
        if rest and not self._z.eof:
            try:
                extra = self._z.decompress(rest, 1)  # a correct stream has only its adler32 trailer left
            except zlib.error as e:
                raise InputError(f"{self.label}: {what}: its zlib stream is damaged ({e})") from None
            rest = self._z.unused_data + self._z.unconsumed_tail
        if extra or rest or not self._z.eof:
            raise InputError(
                f"{self.label}: {what}: its compressed element holds more or less than the "
                "matrix it declares; the file is damaged or hostile"
            )
