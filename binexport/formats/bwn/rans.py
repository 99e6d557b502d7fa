"""Interleaved rANS with integer-only tables: the entropy coder of ``.bwn`` (FORMAT.md, "rANS streams").

A stream codes n symbols of one tensor with one static frequency table over
L interleaved lanes (symbol n uses lane n mod L). Decoding is pure integer
arithmetic, so a C reader gets bit-identical results. ``decode_jobs`` runs the
streams of every coded tensor of a file in lockstep, one numpy round per row
of L symbols: that keeps a pure-numpy decode of a 27-million-weight model to
a fraction of a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from binexport.errors import FormatError

PROB_BITS = 14
TOTAL = 1 << PROB_BITS
RANS_L = 1 << 16
ABSENT = 255

#: floor(2**31 * 2**(-j/16) + 0.5), j = 0..15: the integer 2^(-v/16) of FORMAT.md, "Frequency tables".
EXP16 = np.array([2147483648, 2056437387, 1969251188, 1885761398, 1805811301, 1729250827, 1655936265,
                  1585730000, 1518500250, 1454120821, 1392470869, 1333434672, 1276901417, 1222764986,
                  1170923762, 1121280436], dtype=np.int64)


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


@dataclass
class Job:
    """One tensor's stream, parsed and bounds-checked, waiting for ``decode_jobs``."""

    what: str
    n: int
    states: np.ndarray
    words: np.ndarray
    freq: np.ndarray
    out: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.out = np.empty(self.n, dtype=np.int64)

    @property
    def lanes(self) -> int:
        return self.states.size


def parse_stream(buf: np.ndarray, n: int, lanes: int, freq: np.ndarray, what: str) -> Job:
    """Check the lane count, state count and word alignment of ``buf`` (states then words) before any allocation."""
    if not 1 <= lanes <= n or -(-n // lanes) > MAX_ROUNDS:
        raise FormatError(f"{what}: lanes is {lanes}, expected {max(1, -(-n // MAX_ROUNDS))}..{n} for {n} symbols "
                          f"(at most {MAX_ROUNDS} symbols per lane) (field 'lanes')")
    if buf.size < 4 * lanes or (buf.size - 4 * lanes) % 2:
        raise FormatError(f"{what}: {buf.size} stream bytes can't hold {lanes} lane states and whole 16-bit words "
                          "(field 'length')")
    states = buf[:4 * lanes].view("<u4")
    if int(states.min()) < RANS_L:
        raise FormatError(f"{what}: a lane's initial rANS state is below 2^16 (field 'states'); the file is corrupt")
    return Job(what, n, states, buf[4 * lanes:].view("<u2"), freq)


def decode_jobs(jobs: list[Job]) -> None:
    """Decode every job into ``job.out``, all streams in lockstep (one numpy round per row of lanes), then check ends."""
    if not jobs:
        return
    jobs = sorted(jobs, key=lambda j: (-(j.n // j.lanes), -(j.n % j.lanes)))
    lanes = np.array([j.lanes for j in jobs], dtype=np.int64)
    base = np.concatenate([[0], np.cumsum(lanes)])
    jid = np.repeat(np.arange(len(jobs)), lanes)
    state = np.concatenate([j.states.astype(np.int64) for j in jobs])
    nwords = np.array([j.words.size for j in jobs], dtype=np.int64)
    words = np.concatenate([j.words.astype(np.int64) for j in jobs] + [np.zeros(1, np.int64)])
    top = words.size - 1
    wend = np.cumsum(nwords)
    wptr = wend - nwords
    table = np.concatenate([_slot_table(j.freq) for j in jobs])
    records: list[np.ndarray] = []
    positions: list[np.ndarray] = []
    out_base = np.concatenate([[0], np.cumsum([j.n for j in jobs])[:-1]]).astype(np.int64)
    for k0, k1, act in _segments(jobs, base):
        ja = jid[act]
        jobs_here, first = np.unique(ja, return_index=True)
        last = np.concatenate([first[1:], [ja.size]]) - 1
        lane_job = np.searchsorted(jobs_here, ja)  # index into jobs_here, per active lane
        toff = ja * TOTAL
        wp = wptr[jobs_here]
        for _ in range(k0, k1):
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
            records.append(r)
        wptr[jobs_here] = wp
        local = (np.arange(base[-1]) - base[jid])[act]
        positions.append(((out_base[ja] + local)[None, :] + np.arange(k0, k1)[:, None] * lanes[ja][None, :]).ravel())
    out = np.empty(int(out_base[-1] + jobs[-1].n), dtype=np.int64)
    out[np.concatenate(positions)] = np.concatenate(records) >> 29
    for i, j in enumerate(jobs):
        if int(wptr[i]) != int(wend[i]):
            how = "ends early" if wptr[i] > wend[i] else f"has {int(wend[i] - wptr[i])} unused 16-bit words"
            raise FormatError(f"{j.what}: the rANS stream {how} (field 'words'); the file is truncated or corrupt")
        st = state[base[i]:base[i + 1]]
        if int(st.min()) != RANS_L or int(st.max()) != RANS_L:
            raise FormatError(f"{j.what}: the rANS lanes did not end in their initial state; the stream is corrupt")
        j.out = out[out_base[i]:out_base[i] + j.n]


def _slot_table(freq: np.ndarray) -> np.ndarray:
    """For each of the TOTAL slots: symbol << 29 | cum << 15 | freq of the symbol that owns it."""
    f = freq.astype(np.int64)
    cum = np.concatenate([[0], np.cumsum(f)[:-1]])
    rec = (np.arange(f.size, dtype=np.int64) << 29) | (cum << 15) | f
    return np.repeat(rec, f)


def _segments(jobs: list[Job], base: np.ndarray):
    """Runs of rounds [k0, k1) with the same active lanes; jobs are sorted by full rounds, then remainder, descending."""
    full = np.array([j.n // j.lanes for j in jobs])
    rem = np.array([j.n % j.lanes for j in jobs])
    cuts = sorted({0, *full.tolist(), *(full[rem > 0] + 1).tolist()})
    for k0, k1 in zip(cuts[:-1], cuts[1:], strict=True):
        nfull = int(np.count_nonzero(full > k0))
        part = np.flatnonzero((full == k0) & (rem > 0))
        if part.size:
            yield k0, k1, np.concatenate([np.arange(base[nfull])] + [np.arange(base[p], base[p] + rem[p]) for p in part])
        elif nfull:
            yield k0, k1, slice(0, int(base[nfull]))
