"""The safetensors container, bounded: an 8-byte little-endian header length, a JSON header, one byte buffer.

The reader never trusts the header. Its length is checked against the file and :data:`MAX_HEADER`; the JSON
against duplicate keys, non-finite numbers and nesting; every tensor's dtype, shape and ``data_offsets``
against the buffer: in range, ``end - begin == prod(shape) * itemsize``, and, as the safetensors spec
requires, the tensors tile the buffer exactly (no overlap, no hole, nothing after the last one). Only then
is any slice of the file viewed as an array. ``__metadata__`` maps strings to strings and nothing else.

The writer lays the header out as the ``safetensors`` package does (tensors in the order given, the header
padded with spaces so the buffer starts 8-byte aligned), so ``safetensors.numpy.load_file`` reads it.
"""

from __future__ import annotations

import json
import math
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from binexport.errors import FormatError
from binexport.fileio import check_input

#: Header bytes, at most: binexport's own headers are ~15 KB for WRN-20-10; 1 MiB bounds the parsed JSON
#: (~40x its text) to ~40 MB. The safetensors package allows 100 MB; a bigger header is refused, not parsed.
MAX_HEADER = 1 << 20
#: Tensors per file and dimensions per shape, at most.
MAX_TENSORS = 100_000
MAX_DIMS = 8
#: safetensors dtype -> little-endian numpy dtype (BF16 has no numpy type: its bits are read as u2).
NUMPY = {
    "BOOL": "|b1",
    "U8": "|u1",
    "I8": "|i1",
    "I16": "<i2",
    "U16": "<u2",
    "F16": "<f2",
    "BF16": "<u2",
    "I32": "<i4",
    "U32": "<u4",
    "F32": "<f4",
    "I64": "<i8",
    "U64": "<u8",
    "F64": "<f8",
}
ITEMSIZE = {k: np.dtype(v).itemsize for k, v in NUMPY.items()}
METADATA = "__metadata__"
_ENTRY_KEYS = {"dtype", "shape", "data_offsets"}


@dataclass(frozen=True)
class Entry:
    """One tensor of the header, checked: ``begin``/``end`` are offsets into the byte buffer."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass
class Container:
    """A checked safetensors file: its header and a read-only memory map of its bytes."""

    path: Path
    size: int
    header_length: int
    metadata: dict[str, str]
    entries: list[Entry]
    data: np.ndarray  # the whole file, uint8, memory-mapped

    @classmethod
    def open(cls, path: str | Path) -> Container:
        """Map ``path`` and check its header against it.

        Raises:
            InputError: the file is missing or unreadable.
            FormatError: the header lies about the file (its length, JSON, a dtype, shape or offset).
        """
        p = check_input(path)
        size = p.stat().st_size
        if size < 8:
            raise FormatError(f"{p}: a safetensors file starts with an 8-byte header length, the file has {size} bytes")
        with open(p, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > min(MAX_HEADER, size - 8):
                raise FormatError(
                    f"{p}: the safetensors header length is {n} bytes, but the file has {size - 8} bytes after it "
                    f"and binexport reads headers of at most {MAX_HEADER} bytes; the file is truncated or not "
                    "safetensors"
                )
            raw = f.read(n)
            data = np.frombuffer(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), dtype=np.uint8)
        header = parse_header(raw, str(p))
        metadata, entries = check_header(header, size - 8 - n, str(p))
        return cls(p, size, n, metadata, entries, data)

    def array(self, e: Entry) -> np.ndarray:
        """The tensor's bytes as a read-only array of its dtype (BF16 as u2 bits); copied only if misaligned."""
        start = 8 + self.header_length + e.begin
        view = self.data[start : start + e.end - e.begin]
        dtype = np.dtype(NUMPY[e.dtype])
        if start % dtype.alignment:
            view = view.copy()
        return view.view(dtype).reshape(e.shape)


def parse_header(raw: bytes, where: str) -> dict[str, Any]:
    """The header's JSON object: UTF-8, starting with ``{``, no duplicate keys, no NaN/Infinity, bounded nesting."""
    if not raw.startswith(b"{"):
        raise FormatError(
            f"{where}: the safetensors header must be a JSON object starting with '{{', found {raw[:8]!r}"
        )

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise FormatError(f"{where}: the safetensors header has the key {k!r} twice; the file is ambiguous")
            out[k] = v
        return out

    def no_constant(name: str) -> Any:
        raise FormatError(f"{where}: the safetensors header holds {name}, which is not JSON")

    try:
        obj = json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates, parse_constant=no_constant)
    except UnicodeDecodeError as e:
        raise FormatError(
            f"{where}: the safetensors header is not UTF-8 (byte {e.start}); the file is corrupt"
        ) from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, a 5000-digit integer, nesting past the stack
        raise FormatError(f"{where}: the safetensors header is not valid JSON ({str(e)[:80]})") from None
    if not isinstance(obj, dict):
        raise FormatError(f"{where}: the safetensors header must be a JSON object, found {type(obj).__name__}")
    return obj


def check_header(header: dict[str, Any], buffer: int, where: str) -> tuple[dict[str, str], list[Entry]]:
    """The metadata and the tensors, each checked against a byte buffer of ``buffer`` bytes.

    Raises:
        FormatError: a non-string metadata value, an unknown dtype, a bad shape, an offset out of range, a size
            that is not ``prod(shape) * itemsize``, or tensors that overlap, leave a hole or don't reach the end.
    """
    meta = header.get(METADATA, {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise FormatError(f"{where}: safetensors '__metadata__' must map strings to strings")
    if len(header) > MAX_TENSORS:
        raise FormatError(f"{where}: the safetensors header lists {len(header)} tensors, at most {MAX_TENSORS}")
    entries = [_entry(k, v, buffer, where) for k, v in header.items() if k != METADATA]
    at = 0
    for e in sorted(entries, key=lambda e: (e.begin, e.end)):
        if e.begin < at:
            raise FormatError(
                f"{where}: tensor {e.name!r} (bytes {e.begin}-{e.end}) overlaps the tensor before it (which ends at "
                f"{at}); the header's data_offsets lie"
            )
        if e.begin > at:
            raise FormatError(
                f"{where}: the bytes {at}-{e.begin} before tensor {e.name!r} belong to no tensor; the safetensors "
                "spec allows no holes"
            )
        at = e.end
    if at != buffer:
        raise FormatError(
            f"{where}: the tensors end at byte {at} of a {buffer}-byte buffer; the safetensors spec allows no "
            "trailing bytes (the header's data_offsets lie, or the file was appended to)"
        )
    return dict(meta), entries


def _entry(name: str, v: Any, buffer: int, where: str) -> Entry:
    what = f"{where}: tensor {name!r}"
    if not isinstance(v, dict) or set(v) != _ENTRY_KEYS:
        found = sorted(v) if isinstance(v, dict) else type(v).__name__
        raise FormatError(f"{what}: expected exactly the keys dtype, shape, data_offsets, found {found}")
    dtype, shape, offsets = v["dtype"], v["shape"], v["data_offsets"]
    if dtype not in NUMPY:
        raise FormatError(f"{what}: dtype {dtype!r} is not one binexport reads ({', '.join(NUMPY)})")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMS
        or not all(type(d) is int and 0 <= d <= buffer for d in shape)
    ):
        raise FormatError(f"{what}: shape {str(shape)[:60]} is not a list of up to {MAX_DIMS} sizes of 0..{buffer}")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets):
        raise FormatError(f"{what}: data_offsets must be two integers [begin, end], found {str(offsets)[:60]}")
    begin, end = offsets
    if not 0 <= begin <= end <= buffer:
        raise FormatError(
            f"{what}: data_offsets [{begin}, {end}] run outside the {buffer}-byte buffer (or end before they "
            "begin); the file is truncated or the header lies"
        )
    need = math.prod(shape) * ITEMSIZE[dtype]  # Python ints: a huge shape is a big number, not an overflow
    if end - begin != need:
        raise FormatError(
            f"{what}: a {dtype} tensor of shape {tuple(shape)} needs {need} bytes, its data_offsets span "
            f"{end - begin}; the header lies"
        )
    return Entry(name, dtype, tuple(shape), begin, end)


def build(metadata: dict[str, str], tensors: list[tuple[str, str, np.ndarray]]) -> bytes:
    """The bytes of a safetensors file: ``tensors`` are (name, dtype, array of that dtype's bytes).

    The widest dtypes come first (stable otherwise), so every tensor starts aligned to its item size.
    """
    header: dict[str, Any] = {METADATA: metadata}
    chunks, at = [], 0
    for name, dtype, arr in sorted(tensors, key=lambda t: -ITEMSIZE[t[1]]):
        raw = np.ascontiguousarray(arr, dtype=NUMPY[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [at, at + len(raw)]}
        chunks.append(raw)
        at += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the buffer starts 8-byte aligned, as the safetensors package writes it
    return b"".join([struct.pack("<Q", len(text)), text, *chunks])
