"""Interleaved rANS with integer-only tables: the entropy coder of ``.bwn`` (FORMAT.md, "rANS streams").

A stream codes n symbols of one tensor with one static frequency table over
L interleaved lanes (symbol n uses lane n mod L). Decoding is pure integer
arithmetic, so a C reader gets bit-identical results. ``decode_jobs`` runs the
streams of the coded tensors of a file in lockstep, one numpy round per row
of L symbols, a batch of streams at a time: that keeps a pure-numpy decode of
a 27-million-weight model to a fraction of a second, and its scratch bounded
(symbols land in 2-byte arrays, gathered 2^20 at a time; FORMAT.md 10.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from binexport.errors import FormatError

PROB_BITS = 14
TOTAL = 1 << PROB_BITS
RANS_L = 1 << 16
ABSENT = 255

#: floor(2**31 * 2**(-j/16) + 0.5), j = 0..15: the integer 2^(-v/16) of FORMAT.md, "Frequency tables".
EXP16 = np.array(
    [
        2147483648,
        2056437387,
        1969251188,
        1885761398,
        1805811301,
        1729250827,
        1655936265,
        1585730000,
        1518500250,
        1454120821,
        1392470869,
        1333434672,
        1276901417,
        1222764986,
        1170923762,
        1121280436,
    ],
    dtype=np.int64,
)


def frequencies(q: np.ndarray) -> np.ndarray:
    """Table bytes (1/16-bit units of -log2 p, 255 = absent) -> frequencies of the present symbols, sum TOTAL."""
    v = q[q != ABSENT].astype(np.int64)
    n = v.size
    u = (EXP16[v & 15] >> (v >> 4)) + 1
    f = 1 + (u * (TOTAL - n)) // u.sum()
    f[int(np.argmax(f))] += TOTAL - int(f.sum())
    return f


def table_from_counts(counts: np.ndarray) -> np.ndarray:
    """Encoder side: the table byte of each symbol from its count (ABSENT where it never occurs)."""
    q = np.full(counts.size, ABSENT, dtype=np.uint8)
    seen = counts > 0
    q[seen] = np.clip(np.rint(-16 * np.log2(counts[seen] / counts.sum())), 0, ABSENT - 1).astype(np.uint8)
    return q


MAX_ROUNDS = 4096  # ceil(n / lanes) may not exceed this: bounds a reader's work per stream


def starts(f: np.ndarray) -> np.ndarray:
    """Each symbol's cumulative start ``c`` (int64) in a table of frequencies ``f``: 0, f0, f0 + f1, ..."""
    return np.concatenate([[0], np.cumsum(f)[:-1]]).astype(np.int64)


def lanes_for(n: int, rounds: int = 2048) -> int:
    """The writer's lane count: about ``rounds`` symbols per lane (fewer lanes cost fewer 4-byte states)."""
    return max(1, -(-n // rounds))


def encode(sidx: np.ndarray, freq: np.ndarray, lanes: int) -> bytes:
    """Lane states (u32) then words (u16) for symbols given as indices into ``freq``; symbol n uses lane n % lanes."""
    n = sidx.size
    cum = np.concatenate([[0], np.cumsum(freq)])
    f, c = freq[sidx].astype(np.int64), cum[sidx].astype(np.int64)
    state = np.full(lanes, RANS_L, dtype=np.int64)
    emitted: list[np.ndarray] = []
    for a in range(((n - 1) // lanes) * lanes, -1, -lanes):
        b = min(n, a + lanes)
        state[: b - a] = push(state[: b - a], f[a:b], c[a:b], emitted)
    return stream_bytes(state, emitted)


def push(x: np.ndarray, f: np.ndarray, c: np.ndarray, emitted: list[np.ndarray]) -> np.ndarray:
    """One encoder step for a row of lanes: renormalise (16-bit words to ``emitted``), then code the symbols.

    ``f`` and ``c`` are each lane's symbol frequency and cumulative frequency; returns the new states. Rows are
    pushed last to first, so :func:`stream_bytes` reverses what was emitted.
    """
    big = x >= (f << (32 - PROB_BITS))
    if big.any():
        emitted.append((x[big] & 0xFFFF)[::-1])
        x[big] >>= 16
    return ((x // f) << PROB_BITS) + (x % f) + c


def stream_bytes(state: np.ndarray, emitted: list[np.ndarray]) -> bytes:
    """The stream of section 9: the lanes' final states (u32), then the words in decoding order (u16)."""
    words = np.concatenate(emitted)[::-1] if emitted else np.zeros(0, np.int64)
    return state.astype("<u4").tobytes() + words.astype("<u2").tobytes()


class Lanes(Protocol):
    """What :func:`segments` reads of a job: its symbol count and its lane count (a :class:`Job` or a planes job)."""

    n: int

    @property
    def lanes(self) -> int: ...


@dataclass
class Job:
    """One tensor's stream, parsed and bounds-checked, waiting for ``decode_jobs``."""

    what: str
    n: int
    states: np.ndarray
    words: np.ndarray
    freq: np.ndarray
    out: np.ndarray | None = None  # after decode_jobs: the n symbol indices (uint16; an alphabet has <= 512)

    @property
    def lanes(self) -> int:
        return self.states.size


def parse_stream(buf: np.ndarray, n: int, lanes: int, freq: np.ndarray, what: str) -> Job:
    """Check the lane count, state count and word alignment of ``buf`` (states then words) before any allocation."""
    if not 1 <= lanes <= n or -(-n // lanes) > MAX_ROUNDS:
        raise FormatError(
            f"{what}: lanes is {lanes}, expected {max(1, -(-n // MAX_ROUNDS))}..{n} for {n} symbols "
            f"(at most {MAX_ROUNDS} symbols per lane) (field 'lanes')"
        )
    if buf.size < 4 * lanes or (buf.size - 4 * lanes) % 2:
        raise FormatError(
            f"{what}: {buf.size} stream bytes can't hold {lanes} lane states and whole 16-bit words (field 'length')"
        )
    states = buf[: 4 * lanes].view("<u4")
    if int(states.min()) < RANS_L:
        raise FormatError(f"{what}: a lane's initial rANS state is below 2^16 (field 'states'); the file is corrupt")
    return Job(what, n, states, buf[4 * lanes :].view("<u2"), freq)


#: Streams decoded together, at most: their slot tables (128 KB each) and lane vectors stay bounded.
MAX_BATCH_JOBS = 64
#: Symbols decoded together, at most (a larger single stream is a batch of its own): what a batch's
#: outputs hold before their tensors are built and the symbol arrays dropped (FORMAT.md 10.5, peak).
MAX_BATCH_VALUES = 1 << 24
#: Symbols gathered (rounds x active lanes) before they are scattered to their tensors: bounds the scratch.
CHUNK_VALUES = 1 << 20


def chunk_rounds(active: int) -> int:
    """Rounds per gather for ``active`` lanes: CHUNK_VALUES symbols, at least one round."""
    return max(1, CHUNK_VALUES // max(active, 1))


def batches(jobs: list, n_of=lambda j: j.n) -> list[list]:
    """``jobs`` in file order, cut into runs of at most MAX_BATCH_JOBS streams and MAX_BATCH_VALUES values."""
    out: list[list] = []
    cur: list = []
    total = 0
    for j in jobs:
        if cur and (len(cur) >= MAX_BATCH_JOBS or total + n_of(j) > MAX_BATCH_VALUES):
            out.append(cur)
            cur, total = [], 0
        cur.append(j)
        total += n_of(j)
    return out + [cur] if cur else out


def decode_jobs(jobs: list[Job]) -> None:
    """Decode every job into ``job.out``, in batches (:func:`batches`), each batch's streams in lockstep."""
    for batch in batches(jobs):
        _decode(batch)


def scatter(jobs: list, g: np.ndarray, c0: int, cols: list[tuple[int, int, int]]) -> None:
    """Rounds ``c0 ..`` of values ``g`` (rounds x active lanes) into each job's ``out``, in element order.

    ``cols``: (job index, first column, end column) per job active here; a job's columns are contiguous. A job
    with fewer active lanes than it has is in its partial last row, which is a one-round segment.
    """
    for jb, a, b in cols:
        j = jobs[jb]
        lo = c0 * j.lanes
        if b - a == j.lanes:
            j.out[lo : lo + g.shape[0] * j.lanes] = g[:, a:b].reshape(-1)
        else:
            j.out[lo : lo + b - a] = g[0, a:b]


def columns(ja: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, int]]]:
    """For the active lanes' job ids (non-decreasing): the jobs here, each one's first column, (job, a, b) runs."""
    here, first = np.unique(ja, return_index=True)
    ends = np.concatenate([first[1:], [ja.size]])
    return here, first, [(int(h), int(a), int(b)) for h, a, b in zip(here, first, ends, strict=True)]


def _decode(jobs: list[Job]) -> None:
    jobs = sorted(jobs, key=lambda j: (-(j.n // j.lanes), -(j.n % j.lanes)))
    lanes = np.array([j.lanes for j in jobs], dtype=np.int64)
    base = np.concatenate([[0], np.cumsum(lanes)])
    jid = np.repeat(np.arange(len(jobs)), lanes)
    state = np.concatenate([j.states.astype(np.int64) for j in jobs])
    nwords = np.array([j.words.size for j in jobs], dtype=np.int64)
    words = np.concatenate([j.words for j in jobs] + [np.zeros(1, np.uint16)])  # u16: a copy no larger than the file
    top = words.size - 1
    wend = np.cumsum(nwords)
    wptr = wend - nwords
    table = np.concatenate([_slot_table(j.freq) for j in jobs])
    for j in jobs:
        j.out = np.empty(j.n, dtype=np.uint16)
    for k0, k1, act in segments(jobs, base):
        ja = jid[act]
        jobs_here, first, cols = columns(ja)
        last = np.concatenate([first[1:], [ja.size]]) - 1
        lane_job = np.searchsorted(jobs_here, ja)  # index into jobs_here, per active lane
        toff = ja * TOTAL
        wp = wptr[jobs_here]
        step = chunk_rounds(ja.size)
        for c0 in range(k0, k1, step):
            g = np.empty((min(k1, c0 + step) - c0, ja.size), dtype=np.uint16)
            for k in range(g.shape[0]):
                x = state[act]
                slot = x & (TOTAL - 1)
                r = table[toff + slot]
                x >>= PROB_BITS
                x *= r & 0x7FFF
                x += slot
                x -= (r >> 15) & (TOTAL - 1)
                need = x < RANS_L
                sel = np.flatnonzero(need)
                if sel.size:
                    cs = np.cumsum(need)
                    upto = cs[last]
                    counts = upto.copy()
                    counts[1:] -= upto[:-1]
                    idx = (wp + counts - upto)[lane_job[sel]] + cs[sel] - 1
                    np.minimum(idx, top, out=idx)  # a stream that runs dry reads the padding; the end check fails it
                    x[sel] = (x[sel] << 16) | words[idx]
                    wp += counts
                state[act] = x
                g[k] = r >> 29
            scatter(jobs, g, c0, cols)
        wptr[jobs_here] = wp
    for i, j in enumerate(jobs):
        if int(wptr[i]) != int(wend[i]):
            how = "ends early" if wptr[i] > wend[i] else f"has {int(wend[i] - wptr[i])} unused 16-bit words"
            raise FormatError(f"{j.what}: the rANS stream {how} (field 'words'); the file is truncated or corrupt")
        st = state[base[i] : base[i + 1]]
        if int(st.min()) != RANS_L or int(st.max()) != RANS_L:
            raise FormatError(f"{j.what}: the rANS lanes did not end in their initial state; the stream is corrupt")


def _slot_table(freq: np.ndarray) -> np.ndarray:
    """For each of the TOTAL slots: symbol << 29 | cum << 15 | freq of the symbol that owns it."""
    f = freq.astype(np.int64)
    cum = np.concatenate([[0], np.cumsum(f)[:-1]])
    rec = (np.arange(f.size, dtype=np.int64) << 29) | (cum << 15) | f
    return np.repeat(rec, f)


def segments(jobs: Sequence[Lanes], base: np.ndarray):
    """Runs of rounds [k0, k1) with the same active lanes; jobs are sorted by full rounds, then remainder, descending."""
    full = np.array([j.n // j.lanes for j in jobs])
    rem = np.array([j.n % j.lanes for j in jobs])
    cuts = sorted({0, *full.tolist(), *(full[rem > 0] + 1).tolist()})
    for k0, k1 in zip(cuts[:-1], cuts[1:], strict=True):
        nfull = int(np.count_nonzero(full > k0))
        part = np.flatnonzero((full == k0) & (rem > 0))
        if part.size:
            yield (
                k0,
                k1,
                np.concatenate([np.arange(base[nfull])] + [np.arange(base[p], base[p] + rem[p]) for p in part]),
            )
        elif nfull:
            yield k0, k1, slice(0, int(base[nfull]))
