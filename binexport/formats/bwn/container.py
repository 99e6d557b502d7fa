"""The ``.bwn`` container: preamble, JSON header, tensor table, alignment, checksums (FORMAT.md sections 1-7, 10).

It knows nothing of models or encodings' insides: ``build`` lays out payloads
the writer made, ``Container.open`` memory-maps a file and checks every
offset, length, padding byte and the header checksum before anything is
decoded. Every violation is a FormatError that names the field.
"""

from __future__ import annotations

import json
import math
import mmap
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from binexport.errors import FormatError, InputError
from binexport.fileio import check_input
from binexport.formats.bwn import header as hdr

MAGIC = b"\x89BWN\r\n\x1a\n"
VERSION = 1
#: ``flags`` bit 0: the network is not the PyTorch port; metadata ``variant`` says which (FORMAT.md section 4.1).
#: A flag, not a version: files of the port stay version 1 with flags 0, byte for byte, and every older
#: reader already refuses a non-zero ``flags`` instead of misreading a McDonnell model as the port.
FLAG_VARIANT = 1
KNOWN_FLAGS = FLAG_VARIANT
ALIGNMENT = 64
#: Header bytes, at most (FORMAT.md section 2): a parsed JSON header takes up to ~40 x its size in memory,
#: so 1 MiB bounds it to ~40 MB; binexport's largest headers (deep WRNs, ~150 bytes a tensor) stay far below.
#: Files of binexport 0.2 and before allowed 16 MiB; none it wrote came near 1 MiB without megabytes of --meta.
MAX_HEADER = 1 << 20
MAX_DEPTH = hdr.MAX_DEPTH
#: The product of a shape's non-zero dimensions may not exceed this (FORMAT.md 10.1): exact in a double,
#: and times an item size in an int64 (numpy's limit); no file could hold 2^53 elements anyway.
MAX_COUNT = 1 << 53
_PREAMBLE = struct.Struct("<8sIIQII")
ITEMSIZE = {"f16": 2, "f32": 4, "f64": 8, "i32": 4, "i64": 8, "bf16": 2}
#: numpy types of raw payloads; bf16 (the top half of an f32, FORMAT.md section 13) has none, so its bits are u2.
NUMPY = {"f16": "<f2", "f32": "<f4", "f64": "<f8", "i32": "<i4", "i64": "<i8", "bf16": "<u2"}
ENCODINGS = {
    "raw": set(ITEMSIZE),
    "packed": {"b1"},
    "rans": {"b1"},
    "rans-ref": {"b1"},
    "f32-rans": {"f32"},
    "planes": {"f32", "f16", "bf16"},
}
_KEYS = ("name", "dtype", "shape", "encoding", "offset", "length", "crc32")
_OPTIONAL = ("data_crc32",)
#: Bytes per decoded element (FORMAT.md section 10, "Decoded size"): what a reader returns. A sign is one byte,
#: as numpy's bool holds it; f16 and bf16 count 4, the binary32 a model reader returns half weights as.
DECODED_ITEM = {**ITEMSIZE, "b1": 1, "f16": 4, "bf16": 4}
GiB = 1 << 30


@dataclass(frozen=True)
class Entry:
    """One row of the tensor table, checked against the file."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    encoding: str
    offset: int
    length: int
    crc32: int
    data_crc32: int | None = None

    @property
    def count(self) -> int:
        return math.prod(self.shape)

    @property
    def decoded_bytes(self) -> int:
        return self.count * DECODED_ITEM[self.dtype]


def default_limit(file_size: int) -> int:
    """The decoded-size limit when the caller sets none: 64 x the file, at least 256 MiB, at most 4 GiB.

    Trained 1-bit weights never code below about 0.5 bit per weight (16 x under one byte per sign), floats
    hardly compress, so 64 x leaves 4 x headroom; only constant kernels, untrained or hostile, get near the
    format's 256 weights per byte. The floor reads any small file; the cap bounds what a default read costs
    (binexport's decoder peaks at most at 1.5 x the decoded size plus 24 x the file: FORMAT.md 10.5).
    """
    return min(4 * GiB, max(GiB // 4, 64 * file_size))


def _align(x: int, a: int) -> int:
    return -(-x // a) * a


Tensor = tuple[str, str, tuple[int, ...], str, bytes]


def build(
    metadata: dict[str, Any], tensors: list[Tensor], data_crc32: dict[str, int] | None = None, flags: int = 0
) -> bytes:
    """The file bytes for (name, dtype, shape, encoding, payload) in order; offsets depend on the header length.

    ``data_crc32``: the CRC of each coded tensor's decoded data (section 7), by name. ``flags``: the
    preamble's flags (:data:`FLAG_VARIANT` for a network that is not the PyTorch port).
    """
    offsets = [0] * len(tensors)
    extra = data_crc32 or {}
    for _ in range(8):  # offsets are written in the header, whose length moves them: iterate to a fixed point
        table = [
            {
                "name": n,
                "dtype": d,
                "shape": list(s),
                "encoding": e,
                "offset": o,
                "length": len(p),
                "crc32": zlib.crc32(p),
                **({"data_crc32": extra[n]} if n in extra else {}),
            }
            for (n, d, s, e, p), o in zip(tensors, offsets, strict=True)
        ]
        header = json.dumps(
            {"metadata": metadata, "tensors": table}, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
        if len(header) > MAX_HEADER:
            raise InputError(
                f"the .bwn header would be {len(header):,} bytes, over the format's {MAX_HEADER:,} "
                "(FORMAT.md section 2); store less user metadata (--meta)"
            )
        pos, new = _align(32 + len(header), ALIGNMENT), []
        for _, _, _, _, p in tensors:
            new.append(pos)
            pos = _align(pos + len(p), ALIGNMENT)
        if new == offsets:
            break
        offsets = new
    pre = _PREAMBLE.pack(MAGIC, VERSION, flags, len(header), ALIGNMENT, 0)[:28]
    out = bytearray(pre + struct.pack("<I", zlib.crc32(header, zlib.crc32(pre))) + header)
    for (_, _, _, _, p), o in zip(tensors, offsets, strict=True):
        out += bytes(o - len(out)) + p
    return bytes(out)


class Container:
    """A memory-mapped, structurally checked ``.bwn`` file: its metadata and tensor entries."""

    def __init__(
        self,
        path: Path,
        data: np.ndarray,
        metadata: dict[str, Any],
        entries: list[Entry],
        header_length: int,
        alignment: int,
        flags: int = 0,
    ) -> None:
        self.path, self.data, self.metadata, self.entries = path, data, metadata, entries
        self.header_length, self.alignment, self.flags = header_length, alignment, flags

    @classmethod
    def open(cls, path: str | Path, max_decoded_bytes: int | None = None) -> Container:
        """Map and check ``path``; refuse it if its tensors decode to more than ``max_decoded_bytes``.

        None means ``default_limit(file size)``. The limit is checked from the header alone, before any
        payload is decoded or anything of a tensor's size is allocated.
        """
        if max_decoded_bytes is not None and (type(max_decoded_bytes) is not int or max_decoded_bytes < 0):
            raise InputError(
                f"max_decoded_bytes must be a whole number of bytes >= 0 or None (the default limit), "
                f"got {max_decoded_bytes!r}; there is no unlimited read (FORMAT.md 10.5)"
            )
        p = check_input(path)
        size = p.stat().st_size
        if size < 32:
            raise FormatError(f"{p}: {size} bytes, shorter than the 32-byte .bwn preamble; the file is truncated")
        with open(p, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)  # zero-copy, writable arrays, private writes
        data = np.frombuffer(mm, dtype=np.uint8)
        magic, version, flags, hlen, align, hcrc = _PREAMBLE.unpack_from(mm, 0)
        if magic != MAGIC:
            raise FormatError(f"{p}: not a .bwn file (magic {magic!r}, expected {MAGIC!r})")
        if version != VERSION:
            newer = " by a newer binexport; upgrade binexport to read it" if version > VERSION else ""
            raise FormatError(
                f"{p}: .bwn format version {version} (field 'version'); this binexport reads "
                f"version {VERSION} only{newer}"
            )
        if flags & ~KNOWN_FLAGS:
            raise FormatError(
                f"{p}: flags is {flags:#x}, expected 0 or {KNOWN_FLAGS:#x} (bit 0: an architecture "
                "variant) (field 'flags'); the file is corrupt or newer"
            )
        if not 2 <= hlen <= MAX_HEADER or 32 + hlen > size:
            raise FormatError(
                f"{p}: header_length is {hlen}, expected 2..{MAX_HEADER} and within the "
                f"{size}-byte file (field 'header_length')"
            )
        if align & (align - 1) or not 64 <= align <= 65536:
            raise FormatError(f"{p}: alignment is {align}, expected a power of two in 64..65536 (field 'alignment')")
        header = mm[32 : 32 + hlen]
        if zlib.crc32(header, zlib.crc32(mm[:28])) != hcrc:
            raise FormatError(f"{p}: header checksum mismatch (field 'header_crc32'); the file is corrupt")
        doc = hdr.parse(header, p)
        metadata, raw_entries = doc["metadata"], doc["tensors"]
        entries = [_entry(e, k, p) for k, e in enumerate(raw_entries)]
        _check_layout(p, data, entries, hlen, align, size)
        _check_decoded_size(p, entries, size, max_decoded_bytes)
        return cls(p, data, metadata, entries, hlen, align, flags)

    def payload(self, e: Entry) -> np.ndarray:
        """The payload's bytes, a view into the mapping (no copy)."""
        return self.data[e.offset : e.offset + e.length]

    def check_crc(self, e: Entry) -> bool:
        return zlib.crc32(self.payload(e)) == e.crc32  # type: ignore[arg-type]  # an ndarray is a buffer


def _int(v: object, lo: int, hi: int) -> bool:
    return type(v) is int and lo <= v <= hi


def _entry(e: object, k: int, p: Path) -> Entry:
    where = f"{p}: tensor #{k}"
    if not isinstance(e, dict) or not set(_KEYS) <= set(e) <= {*_KEYS, *_OPTIONAL}:
        found = sorted(e) if isinstance(e, dict) else type(e).__name__
        raise FormatError(
            f"{where}: expected an object with keys {', '.join(_KEYS)} and optionally "
            f"{', '.join(_OPTIONAL)}, found {found}"
        )
    name = hdr.check_name(e["name"], where)
    where = f"{p}: tensor {name!r}"
    dtype, enc, shape = e["dtype"], e["encoding"], e["shape"]
    if not isinstance(dtype, str) or dtype not in (*ITEMSIZE, "b1"):
        raise FormatError(
            f"{where}: dtype {dtype!r} is unknown; expected one of {', '.join([*ITEMSIZE, 'b1'])} (field 'dtype')"
        )
    if not isinstance(enc, str) or enc not in ENCODINGS:
        raise FormatError(
            f"{where}: encoding {enc!r} is unknown; expected one of {', '.join(ENCODINGS)} "
            "(field 'encoding'); the file may need a newer binexport"
        )
    if dtype not in ENCODINGS[enc]:
        raise FormatError(f"{where}: encoding {enc!r} can't hold dtype {dtype!r} (field 'encoding')")
    if not isinstance(shape, list) or len(shape) > 8 or not all(_int(d, 0, 2**31 - 1) for d in shape):
        raise FormatError(f"{where}: 'shape' must be 0 to 8 integers in 0..2^31-1, found {shape!r} (field 'shape')")
    if math.prod(d for d in shape if d) > MAX_COUNT:  # zeros skipped: the rule can't depend on where a 0 stands
        raise FormatError(
            f"{where}: shape {shape}: the product of its non-zero dimensions exceeds 2^53 (field 'shape')"
        )
    for key, hi in (("offset", 2**64 - 1), ("length", 2**64 - 1), ("crc32", 2**32 - 1), ("data_crc32", 2**32 - 1)):
        if key in e and not _int(e[key], 0, hi):
            raise FormatError(f"{where}: {key!r} must be an integer in 0..{hi}, found {e[key]!r} (field {key!r})")
    if enc in ("raw", "packed") and "data_crc32" in e and e["data_crc32"] != e["crc32"]:
        raise FormatError(
            f"{where}: data_crc32 {e['data_crc32']} differs from crc32 {e['crc32']}, but a {enc} "
            "payload is its decoded data (field 'data_crc32'); the file is corrupt"
        )
    return Entry(name, dtype, tuple(shape), enc, e["offset"], e["length"], e["crc32"], e.get("data_crc32"))


def _check_layout(p: Path, data: np.ndarray, entries: list[Entry], hlen: int, align: int, size: int) -> None:
    names: set[str] = set()
    pad_from, pos = 32 + hlen, _align(32 + hlen, align)
    for e in entries:
        if e.name in names:
            raise FormatError(f"{p}: tensor name {e.name!r} appears twice (field 'name')")
        names.add(e.name)
        if e.offset != pos:
            raise FormatError(
                f"{p}: tensor {e.name!r} has offset {e.offset}, expected {pos} (field 'offset'): "
                "payloads follow each other in table order, each aligned, with no holes or overlaps"
            )
        if e.length > size - e.offset:
            raise FormatError(
                f"{p}: tensor {e.name!r} needs bytes {e.offset}..{e.offset + e.length} of a "
                f"{size}-byte file (field 'length'); the file is truncated"
            )
        _check_zero(p, data, pad_from, e.offset)
        _check_length(p, e)
        pad_from, pos = e.offset + e.length, _align(e.offset + e.length, align)
    end = pad_from if entries else 32 + hlen
    if size != end:
        raise FormatError(
            f"{p}: the file is {size} bytes but its tensors end at byte {end}; "
            f"{'trailing bytes' if size > end else 'the file is truncated'} (file length)"
        )


def _check_decoded_size(p: Path, entries: list[Entry], size: int, limit: int | None) -> None:
    total = sum(e.decoded_bytes for e in entries)
    cap = default_limit(size) if limit is None else limit
    if total > cap:
        how = (
            "max_decoded_bytes"
            if limit is not None
            else f"the default for a {size:,}-byte file, min(4 GiB, max(256 MiB, 64 x file size))"
        )
        raise FormatError(
            f"{p}: the tensors decode to {total:,} bytes, over the limit of {cap:,} ({how}) "
            "(field 'shape'); if you trust the file, read it with a larger max_decoded_bytes"
        )


def _check_zero(p: Path, data: np.ndarray, start: int, end: int) -> None:
    if end > start and data[start:end].any():
        raise FormatError(f"{p}: padding bytes {start}..{end} are not zero (padding)")


def _check_length(p: Path, e: Entry) -> None:
    """Lengths the encoding fixes exactly; coded encodings are bounded by their count limits."""
    if e.encoding == "raw" and e.length != e.count * ITEMSIZE[e.dtype]:
        raise FormatError(
            f"{p}: tensor {e.name!r} is raw {e.dtype} {list(e.shape)}: {e.count * ITEMSIZE[e.dtype]} "
            f"bytes expected, length says {e.length} (field 'length')"
        )
    if e.encoding == "packed" and e.length != (e.count + 7) // 8:
        raise FormatError(
            f"{p}: tensor {e.name!r} is packed b1 {list(e.shape)}: {(e.count + 7) // 8} bytes "
            f"expected, length says {e.length} (field 'length')"
        )


def to_array(c: Container, e: Entry) -> np.ndarray:
    """A raw tensor as a zero-copy view of the mapping."""
    return c.payload(e).view(NUMPY[e.dtype]).reshape(e.shape)
