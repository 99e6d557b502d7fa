"""Tensor payload encodings of ``.bwn``: packed bits, kernel rANS (plain and ranked by reference), float32 rANS.

``encode_*`` return payload bytes. Decoding is two-step so every coded tensor
of a file shares one lockstep rANS pass: ``parse_*`` checks every field of a
payload before anything is allocated and returns a ``Pending`` (its rANS jobs
and a ``finish`` that builds the array); ``rans.decode_jobs`` runs the
jobs. docs/FORMAT.md is normative; section names here match it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from binexport.errors import FormatError
from binexport.formats.bwn import fit, rans
from binexport.formats.bwn.planes_types import PlaneJob

#: A kernel-coded tensor holds at most this many weights per payload byte (32x under packed bits),
#: which bounds what a file that lies about shapes can make a reader allocate.
MAX_WEIGHTS_PER_BYTE = 256
MAX_KERNEL_BITS = 9
_HEAD = 8  # axis u8, wq u8, reserved u16, lanes u32


@dataclass
class Pending:
    jobs: list[rans.Job | PlaneJob]
    finish: Callable[[], np.ndarray]


# --- packed -----------------------------------------------------------------------------------------------


def encode_packed(signs: np.ndarray) -> bytes:
    return np.packbits(np.ascontiguousarray(signs, dtype=bool).ravel()).tobytes()


def decode_packed(raw: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    n = math.prod(shape)
    if raw.size != (n + 7) // 8:
        raise FormatError(
            f"{what}: packed payload is {raw.size} bytes, expected ceil({n}/8) = {(n + 7) // 8} (field 'length')"
        )
    if n % 8 and int(raw[-1]) & ((1 << (8 - n % 8)) - 1):
        raise FormatError(f"{what}: the padding bits of the last byte are not zero; the file is corrupt")
    return np.unpackbits(raw, count=n).view(bool).reshape(shape)


# --- kernel symbols ---------------------------------------------------------------------------------------


def kernel_codable(shape: tuple[int, ...]) -> bool:
    return len(shape) == 4 and shape[0] >= 1 and shape[1] >= 1 and 1 <= shape[2] * shape[3] <= MAX_KERNEL_BITS


def kernel_symbols(signs: np.ndarray) -> np.ndarray:
    """(O, I, KH, KW) bools -> (O, I): each kernel's KH*KW bits, row-major, the first the most significant."""
    o, i, kh, kw = signs.shape
    k = kh * kw
    return signs.reshape(o, i, k).astype(np.int64) @ (1 << np.arange(k - 1, -1, -1, dtype=np.int64))


def symbols_to_signs(sym: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    k = shape[2] * shape[3]
    bits = ((np.arange(1 << k)[:, None] >> np.arange(k - 1, -1, -1)) & 1).astype(bool)
    rows = np.ascontiguousarray(bits).view(f"V{k}").ravel()  # one k-byte item per symbol: a fast gather
    return np.take(rows, sym.ravel()).view(bool).reshape(shape)


_HAM_CACHE: dict[int, np.ndarray] = {}


def _ham(k: int) -> np.ndarray:
    """popcount(a XOR b) for every pair of k-bit patterns."""
    if k not in _HAM_CACHE:
        a = np.arange(1 << k)
        pc = np.zeros(1 << k, dtype=np.int16)
        for b in range(k):
            pc += (a >> b) & 1
        _HAM_CACHE[k] = pc[a[:, None] ^ a[None, :]]
    return _HAM_CACHE[k]


def rank_tables(q0: np.ndarray, wq: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """perm[r, rank] -> present-symbol index, rows r = 0..2^k-1 then the base row 2^k (FORMAT.md, "Ranks")."""
    present = np.flatnonzero(q0 != rans.ABSENT)
    q = q0[present].astype(np.int32)
    score = np.concatenate([q[None, :] + wq * _ham(k)[:, present], q[None, :]], axis=0)
    key = (score << 9) | np.arange(present.size, dtype=np.int32)  # ties: the smaller symbol first
    return present, (np.sort(key, axis=1) & 511).astype(np.int64)


# --- parents (the reference model) ------------------------------------------------------------------------


def _pack_parents(parent: np.ndarray, flip: np.ndarray) -> bytes:
    width = parent.size.bit_length()
    value = parent + 1
    bits = ((value[:, None] >> np.arange(width - 1, -1, -1)) & 1).astype(np.uint8)
    return np.packbits(np.concatenate([bits, flip[:, None].astype(np.uint8)], axis=1).ravel()).tobytes()


def _unpack_parents(raw: np.ndarray, g: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    width = g.bit_length()
    nbits = g * (width + 1)
    if nbits % 8 and int(raw[-1]) & ((1 << (8 - nbits % 8)) - 1):
        raise FormatError(f"{what}: the padding bits after the parent table are not zero (field 'parents')")
    bits = np.unpackbits(raw, count=nbits).reshape(g, width + 1).astype(np.int64)
    value = bits[:, :width] @ (1 << np.arange(width - 1, -1, -1, dtype=np.int64))
    flip = bits[:, width]
    if int(value.max()) > g:
        raise FormatError(f"{what}: a parent index is {int(value.max()) - 1}, beyond the {g} groups (field 'parents')")
    parent = value - 1
    if np.any(parent == np.arange(g)):
        raise FormatError(f"{what}: a group is its own parent (field 'parents')")
    if np.any((parent < 0) & (flip != 0)):
        raise FormatError(f"{what}: a flip bit is set on a group without a parent (field 'parents')")
    return parent, flip


def _levels(parent: np.ndarray, what: str) -> np.ndarray:
    level = np.where(parent < 0, 0, -1)
    todo = parent >= 0
    while todo.any():
        ready = todo & (level[np.maximum(parent, 0)] >= 0)
        if not ready.any():
            raise FormatError(f"{what}: the parent table has a cycle (field 'parents')")
        level[ready] = level[parent[ready]] + 1
        todo &= ~ready
    return level


# --- kernel rANS ------------------------------------------------------------------------------------------


def encode_kernels(
    signs: np.ndarray, refs: bool, beat: int | None = None, lanes: int | None = None, axis: int | None = None
) -> bytes | None:
    """The 'rans' (refs=False) or 'rans-ref' payload, or None where the format's limits rule it out.

    With ``beat`` (a size in bytes), also None as soon as the ideal code length shows the payload can't be
    smaller: untrained or random signs skip the work. ``lanes`` and ``axis`` override the writer's choices
    (the golden files use them to exercise every branch a reader has).
    """
    shape = signs.shape
    if not kernel_codable(shape):
        return None
    k = shape[2] * shape[3]
    a = 1 << k
    sym0 = kernel_symbols(signs)
    counts = np.bincount(sym0.ravel(), minlength=a)
    q0 = rans.table_from_counts(counts)
    seen = counts[counts > 0]
    order0 = float(-(seen * np.log2(seen / seen.sum())).sum()) / 8 + _HEAD + a
    if beat is not None and order0 > (0.97 * beat if refs else beat):
        return None  # rans-ref also skips near-uniform layers (untrained signs): nothing worth referencing
    force, axis, wq = axis, 0, 0
    g = shape[0]
    parent, flip = np.full(g, -1, dtype=np.int64), np.zeros(g, dtype=np.int64)
    if refs:
        best = None
        for ax in (0, 1) if force is None else (force,):
            s = sym0 if ax == 0 else sym0.T
            if s.shape[0] < 2:
                continue
            par, fl = fit.parents(signs if ax == 0 else signs.transpose(1, 0, 2, 3))
            w, use, cost = fit.weight(s, par, fl, k, q0, _ham(k))
            if best is None or cost < best[0]:
                best = (cost, ax, w, np.where(use, par, -1), np.where(use, fl, 0))
        if best is None or (beat is not None and best[0] / 8 + _HEAD + a > beat):
            return None
        _, axis, wq, parent, flip = best
    sym = sym0 if axis == 0 else sym0.T
    present = np.flatnonzero(q0 != rans.ABSENT)
    lookup = np.cumsum(q0 != rans.ABSENT) - 1  # symbol -> index among present symbols
    head = np.array([axis, wq, 0, 0], dtype=np.uint8).tobytes()
    lanes = lanes or rans.lanes_for(sym.size)
    head += np.uint32(lanes).astype("<u4").tobytes() + q0.tobytes()
    if refs:
        _, perm = rank_tables(q0, wq, k)
        rank = np.empty_like(perm)
        np.put_along_axis(rank, perm, np.arange(present.size)[None, :], axis=1)
        row = np.where(parent[:, None] >= 0, sym[np.maximum(parent, 0)] ^ (flip[:, None] * (a - 1)), a)
        stream = rank[row, lookup[sym]].ravel()
        qr = rans.table_from_counts(np.bincount(stream, minlength=present.size))
        head += _pack_parents(parent, flip) + qr.tobytes()
    else:
        stream = sym.ravel()
        qr = q0
    freq = rans.frequencies(qr)
    remap = np.cumsum(qr != rans.ABSENT) - 1  # stream values -> index among present table entries
    data = head + rans.encode(remap[stream], freq, lanes)
    if math.prod(shape) > MAX_WEIGHTS_PER_BYTE * len(data):
        return None
    return data


def parse_kernels(buf: np.ndarray, shape: tuple[int, ...], refs: bool, what: str) -> Pending:
    if not kernel_codable(shape):
        raise FormatError(
            f"{what}: shape {list(shape)} can't be kernel-coded: expected (O, I, KH, KW) with O, I >= 1 "
            f"and 1 <= KH*KW <= {MAX_KERNEL_BITS} (field 'shape')"
        )
    size = buf.size
    if math.prod(shape) > MAX_WEIGHTS_PER_BYTE * size:
        raise FormatError(
            f"{what}: {math.prod(shape)} weights in a {size}-byte payload is more than "
            f"{MAX_WEIGHTS_PER_BYTE} per byte (field 'length'); the file lies about the shape or is corrupt"
        )
    k = shape[2] * shape[3]
    a = 1 << k
    if size < _HEAD + a:
        raise FormatError(
            f"{what}: the payload is {size} bytes, shorter than its {_HEAD + a}-byte model (field 'length')"
        )
    axis, wq, r0, r1 = (int(v) for v in buf[:4])
    lanes = int(buf[4:8].view("<u4")[0])
    if axis not in (0, 1) or (not refs and axis != 0):
        raise FormatError(f"{what}: axis is {axis}, expected {'0 or 1' if refs else '0'} (field 'axis')")
    if (r0, r1) != (0, 0):
        raise FormatError(f"{what}: the reserved bytes are not zero (field 'reserved')")
    if not refs and wq != 0:
        raise FormatError(f"{what}: wq is {wq}, expected 0 for encoding 'rans' (field 'wq')")
    g, p = (shape[0], shape[1]) if axis == 0 else (shape[1], shape[0])
    q0 = buf[_HEAD : _HEAD + a]
    present = np.flatnonzero(q0 != rans.ABSENT)
    if present.size == 0:
        raise FormatError(f"{what}: the symbol table marks every symbol absent (field 'table')")
    pos = _HEAD + a
    parent, flip = np.full(g, -1, dtype=np.int64), np.zeros(g, dtype=np.int64)
    qr = q0
    if refs:
        nbytes = (g * (g.bit_length() + 1) + 7) // 8
        if size < pos + nbytes + present.size:
            raise FormatError(f"{what}: the payload ends inside the parent or rank table (field 'parents')")
        parent, flip = _unpack_parents(buf[pos : pos + nbytes], g, what)
        qr = buf[pos + nbytes : pos + nbytes + present.size]
        pos += nbytes + present.size
        if not np.any(qr != rans.ABSENT):
            raise FormatError(f"{what}: the rank table marks every rank absent (field 'rank_table')")
    level = _levels(parent, what)
    job = rans.parse_stream(buf[pos:], g * p, lanes, rans.frequencies(qr), what)

    def finish() -> np.ndarray:
        # stream value -> symbol or rank; uint16 throughout (2^K <= 512), so the scratch stays 2 bytes a kernel
        idx = np.flatnonzero(qr != rans.ABSENT).astype(np.uint16)[job.out]
        job.out = None
        if not refs:
            sym = idx.reshape(g, p)
        else:
            _, perm = rank_tables(q0, wq, k)
            perm = perm.astype(np.uint16)
            ranks = idx.reshape(g, p)
            sym = np.empty((g, p), dtype=np.uint16)
            by_level = np.argsort(level, kind="stable")
            ends = np.cumsum(np.bincount(level))
            roots = by_level[: ends[0]]
            sym[roots] = perm[a][ranks[roots]]
            for lo, hi in zip(ends[:-1], ends[1:], strict=True):
                grp = by_level[lo:hi]
                row = present[sym[parent[grp]]] ^ (flip[grp][:, None] * (a - 1))
                sym[grp] = perm[row, ranks[grp]]
            sym = present.astype(np.uint16)[sym]
        return symbols_to_signs(sym if axis == 0 else sym.T, shape)

    return Pending([job], finish)


# --- float32 rANS -----------------------------------------------------------------------------------------


def encode_f32(arr: np.ndarray, lanes: int | None = None) -> bytes:
    """'f32-rans': each value's top byte (sign, 7 exponent bits) rANS-coded, its low 3 bytes as they are."""
    u = np.ascontiguousarray(arr, dtype="<f4").reshape(-1).view("<u4")
    n = u.size
    top = (u >> 24).astype(np.int64)
    first, last = int(top.min()), int(top.max())
    q = rans.table_from_counts(np.bincount(top - first, minlength=last - first + 1))
    remap = np.cumsum(q != rans.ABSENT) - 1
    lanes = lanes or rans.lanes_for(n)
    low = u.view(np.uint8).reshape(n, 4)[:, :3]
    return (
        np.uint32(lanes).astype("<u4").tobytes()
        + bytes([first, last - first])
        + q.tobytes()
        + low.tobytes()
        + rans.encode(remap[top - first], rans.frequencies(q), lanes)
    )


def parse_f32(buf: np.ndarray, shape: tuple[int, ...], what: str) -> Pending:
    n = math.prod(shape)
    if buf.size < 6:
        raise FormatError(
            f"{what}: the f32-rans payload is {buf.size} bytes, shorter than its 6-byte head (field 'length')"
        )
    lanes = int(buf[:4].view("<u4")[0])
    first, span = int(buf[4]), int(buf[5])
    if first + span > 255:
        raise FormatError(f"{what}: the table covers top bytes {first}..{first + span}, beyond 255 (field 'span')")
    head = 6 + span + 1 + 3 * n
    if n == 0 or buf.size < head + 4:
        raise FormatError(
            f"{what}: the f32-rans payload is {buf.size} bytes, too short for {n} values "
            f"(at least {head + 4}) (field 'length')"
        )
    q = buf[6 : 7 + span]
    if q[0] == rans.ABSENT or q[span] == rans.ABSENT:
        raise FormatError(
            f"{what}: the table's first and last entries (top bytes {first} and {first + span}) "
            "must be present, not 255 (field 'table')"
        )
    job = rans.parse_stream(buf[head:], n, lanes, rans.frequencies(q), what)
    low = buf[7 + span : head]

    def finish() -> np.ndarray:
        out = np.empty((n, 4), dtype=np.uint8)
        out[:, :3] = low.reshape(n, 3)
        out[:, 3] = (first + np.flatnonzero(q != rans.ABSENT)).astype(np.uint8)[job.out]
        job.out = None
        return out.view("<f4").reshape(shape)

    return Pending([job], finish)
