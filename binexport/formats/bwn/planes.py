"""The ``planes`` encoding of float tensors (``f32``, ``f16``, ``bf16``): bit planes and interleaved rANS.

Each value is split into A = 2E + S (exponent and sign, one order-0 table per
tensor), B = the top ``m mod 8`` mantissa bits (coded with a table chosen by the
exponent, or the uniform table) and LOW = the remaining whole mantissa bytes,
stored as they are (docs/FORMAT.md section 13). Why planes and not a general
compressor: on He-init float32 weights it is 8.9 % smaller than ``xz -9`` and
0.8 % smaller than ``f32-rans``, within 0.07 % of its order-0 bound, and it
decodes the whole model in well under a second because every tensor's stream
runs in one lockstep numpy pass (research: /work/research/f32codec/FINDINGS.md).

The rANS arithmetic, table bytes and limits are those of :mod:`rans`; what is
new is two symbols per value, the second's table depending on the first.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from binexport.errors import FormatError
from binexport.formats.bwn import rans
from binexport.formats.bwn.planes_types import LAYOUTS, PlaneJob

T = rans.TOTAL
ABSENT = rans.ABSENT
#: bf16 has no LOW plane, so nothing else bounds what its count can make a reader allocate.
BF16_MAX_PER_BYTE = 32


# --- encoder ----------------------------------------------------------------------------------------------


def encode(bits: np.ndarray, dtype: str) -> bytes | None:
    """The ``planes`` payload of values given as their bits (uint32 for f32, uint16 for f16/bf16).

    Returns None where the format rules it out: no values, or a bf16 tensor over the count limit (an
    all-zero tensor compresses too well to be told apart from a lie about its shape; raw holds it).
    """
    lay = LAYOUTS[dtype]
    b = np.ascontiguousarray(bits).reshape(-1).astype(np.int64)
    n = b.size
    if n == 0:
        return None
    s = b >> (lay.ebits + lay.mbits)
    e = (b >> lay.mbits) & ((1 << lay.ebits) - 1)
    a = 2 * e + s
    bb = (b >> (8 * lay.r)) & ((1 << lay.k) - 1)
    nb = 1 << lay.k
    a_first, a_last = int(a.min()), int(a.max())
    ca = np.bincount(a - a_first, minlength=a_last - a_first + 1)
    qa = rans.table_from_counts(ca)
    hist = np.bincount(e * nb + bb, minlength=(1 << lay.ebits) * nb).reshape(1 << lay.ebits, nb)
    ctx, qbs = [], []
    for ex in np.flatnonzero(hist.sum(1)):
        qb = rans.table_from_counts(hist[ex])
        if _code_bits(hist[ex], qb) + 8 * (nb + 1) < lay.k * hist[ex].sum():  # its own table pays for itself
            ctx.append(int(ex))
            qbs.append(qb)
    fa_tab = rans.frequencies(qa)
    ia = (np.cumsum(qa != ABSENT) - 1)[a - a_first]
    fa, ca_ = fa_tab[ia], rans.starts(fa_tab)[ia]
    fb_all = np.full((1 << lay.ebits, nb), T // nb, dtype=np.int64)
    cb_all = np.tile(np.arange(nb, dtype=np.int64) * (T // nb), (1 << lay.ebits, 1))
    for cx, qb in zip(ctx, qbs, strict=True):
        f = rans.frequencies(qb)
        present = np.flatnonzero(qb != ABSENT)
        fb_all[cx], cb_all[cx] = 0, 0
        fb_all[cx, present], cb_all[cx, present] = f, rans.starts(f)
    lanes = rans.lanes_for(n)
    stream = _encode_pairs(fa, ca_, fb_all[e, bb], cb_all[e, bb], lanes)
    head = (
        np.array([lanes], "<u4").tobytes()
        + np.array([a_first, a_last - a_first], "<u2").tobytes()
        + qa.tobytes()
        + np.array([len(ctx)], "<u2").tobytes()
        + bytes(ctx)
        + b"".join(q.tobytes() for q in qbs)
    )
    low = (b & ((1 << (8 * lay.r)) - 1)).astype(f"<u{lay.r}").tobytes() if lay.r else b""
    out = head + low + stream
    if lay.r == 0 and n > BF16_MAX_PER_BYTE * len(out):
        return None
    return out


def _code_bits(counts: np.ndarray, q: np.ndarray) -> float:
    f = np.zeros(q.size, dtype=np.int64)
    f[q != ABSENT] = rans.frequencies(q)
    seen = counts > 0
    return float(-(counts[seen] * np.log2(f[seen] / T)).sum())


def _encode_pairs(fa: np.ndarray, ca: np.ndarray, fb: np.ndarray, cb: np.ndarray, lanes: int) -> bytes:
    """Rows walked backwards; in each row the B symbols, then the A symbols, each with section 9.4's step."""
    n = fa.size
    state = np.full(lanes, rans.RANS_L, dtype=np.int64)
    emitted: list[np.ndarray] = []
    for a0 in range(((n - 1) // lanes) * lanes, -1, -lanes):
        a1 = min(n, a0 + lanes)
        for f, c in ((fb[a0:a1], cb[a0:a1]), (fa[a0:a1], ca[a0:a1])):
            state[: a1 - a0] = rans.push(state[: a1 - a0], f, c, emitted)
    return rans.stream_bytes(state, emitted)


# --- parsing ----------------------------------------------------------------------------------------------


def parse(buf: np.ndarray, shape: tuple[int, ...], dtype: str, what: str) -> tuple[PlaneJob, Callable[[], np.ndarray]]:
    """Check every field of a payload before anything sized by it is allocated; the job and a ``finish``.

    ``finish()`` (after :func:`decode_jobs`) returns the values' bits (uint32 for f32, uint16 otherwise).
    """
    if dtype not in LAYOUTS:
        raise FormatError(f"{what}: encoding 'planes' can't hold dtype {dtype!r} (field 'encoding')")
    lay, n, size = LAYOUTS[dtype], math.prod(shape), buf.size
    nb = 1 << lay.k
    if n < 1:
        raise FormatError(f"{what}: a planes tensor needs at least one value (field 'shape')")
    if lay.r == 0 and n > BF16_MAX_PER_BYTE * size:
        raise FormatError(
            f"{what}: {n} bf16 values in a {size}-byte payload is more than {BF16_MAX_PER_BYTE} per "
            "byte (field 'length'); the file lies about the shape or is corrupt"
        )
    if size < 8:
        raise FormatError(f"{what}: the planes payload is {size} bytes, shorter than its 8-byte head (field 'length')")
    lanes = int(buf[:4].view("<u4")[0])
    a_first, a_span = (int(v) for v in buf[4:8].view("<u2"))
    if not 1 <= lanes <= n or -(-n // lanes) > rans.MAX_ROUNDS:
        raise FormatError(
            f"{what}: lanes is {lanes}, expected {max(1, -(-n // rans.MAX_ROUNDS))}..{n} for {n} "
            f"values (at most {rans.MAX_ROUNDS} per lane) (field 'lanes')"
        )
    if a_first + a_span > (2 << lay.ebits) - 1:
        raise FormatError(
            f"{what}: the A table covers {a_first}..{a_first + a_span}, beyond "
            f"{(2 << lay.ebits) - 1} for {dtype} (field 'a_span')"
        )
    p = 9 + a_span
    if size < p + 2:
        raise FormatError(f"{what}: the payload ends inside the A table (field 'length')")
    qa = buf[8:p]
    if not np.any(qa != ABSENT):
        raise FormatError(f"{what}: the A table marks every symbol absent (field 'a_table')")
    n_ctx = int(buf[p : p + 2].view("<u2")[0])
    if n_ctx > (1 << lay.ebits):
        raise FormatError(
            f"{what}: n_ctx is {n_ctx}, more than the {1 << lay.ebits} exponents of {dtype} (field 'n_ctx')"
        )
    q = p + 2 + n_ctx * (1 + nb)
    low_end = q + lay.r * n
    if size < low_end + 4 * lanes or (size - low_end - 4 * lanes) % 2:
        raise FormatError(
            f"{what}: the payload is {size} bytes; its tables, {lay.r * n} LOW bytes, {lanes} lane "
            "states and whole 16-bit words don't fit it (field 'length')"
        )
    ctx = buf[p + 2 : p + 2 + n_ctx].astype(np.int64)
    if n_ctx and (np.any(np.diff(ctx) <= 0) or int(ctx.max()) >= (1 << lay.ebits)):
        raise FormatError(
            f"{what}: the context exponents are not strictly increasing and below {1 << lay.ebits} (field 'ctx')"
        )
    bt = buf[p + 2 + n_ctx : q].reshape(n_ctx, nb)
    if n_ctx and np.any(np.all(bt == ABSENT, axis=1)):
        raise FormatError(f"{what}: a B table marks every symbol absent (field 'b_tables')")
    states = buf[low_end : low_end + 4 * lanes].view("<u4")
    if int(states.min()) < rans.RANS_L:
        raise FormatError(f"{what}: a lane's initial rANS state is below 2^16 (field 'states'); the file is corrupt")
    job = PlaneJob(
        what,
        n,
        lay,
        states,
        buf[low_end + 4 * lanes :].view("<u2"),
        a_first + np.flatnonzero(qa != ABSENT),
        rans.frequencies(qa),
        ctx,
        bt,
    )
    low = buf[q:low_end]

    def finish() -> np.ndarray:
        assert job.out is not None  # decode_jobs filled it before finish runs (not a validation)
        hi = job.out.astype(np.dtype(lay.item).newbyteorder("="), copy=False)  # bf16: the decoded array itself
        job.out = None
        if lay.r:  # in place: no temporaries the size of the tensor
            hi <<= np.array(8 * lay.r, hi.dtype)
            hi |= low.view(f"<u{lay.r}")
        return hi

    return job, finish
