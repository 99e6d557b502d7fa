"""Lockstep decoding of ``planes`` streams (docs/FORMAT.md 13.2): every tensor's lanes in one numpy pass.

Why a pass of its own beside :func:`rans.decode_jobs`: each row decodes two symbols per lane, and the second
symbol's table depends on the first, so the per-round work differs; the segment structure (runs of rounds
with the same active lanes) and the word addressing are the same. Small slot tables (uint16 ids, 32 KB per
table) keep the random lookups in cache: that is what brings a WRN-20-10 under a second.
"""

from __future__ import annotations

import numpy as np

from binexport.errors import FormatError
from binexport.formats.bwn import rans
from binexport.formats.bwn.planes_types import PlaneJob

ABSENT = rans.ABSENT
T = rans.TOTAL


def decode_jobs(jobs: list[PlaneJob]) -> None:
    """Decode every job into ``job.out`` (each value's bits above LOW, uint16), a batch of streams at a time.

    Symbol ids are uint16 and global over the jobs decoded together, so a batch also ends before they would
    overflow; besides that batches are those of :func:`rans.batches` (bounded streams and values).
    """
    for part in rans.batches(jobs):
        batch: list[PlaneJob] = []
        na = nb = 0
        for j in part:
            ja, jb = j.a_values.size, (1 << j.lay.k) * (j.ctx.size + 1)
            if batch and (na + ja > 1 << 16 or nb + jb > 1 << 16):
                _decode(batch)
                batch, na, nb = [], 0, 0
            batch.append(j)
            na, nb = na + ja, nb + jb
        if batch:
            _decode(batch)


def _slots(f: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(slot -> id of the entry owning it, T entries, uint16) and (c << 15 | f per entry)."""
    f = f.astype(np.int64)
    return np.repeat(ids.astype(np.uint16), f), (rans.starts(f) << 15) | f


def _tables(jobs: list[PlaneJob]) -> tuple[np.ndarray, ...]:
    """Global decoder tables: slotA[job*T + slot] -> A id; RA[A id] = (B table * T) << 29 | c << 15 | f;
    slotB[table*T + slot] -> B id; RB[B id] = c << 15 | f; HA, HB: the bits above LOW each id stands for."""
    slot_a, ra, ha, slot_b, rb, hb = list[np.ndarray](), [], [], list[np.ndarray](), [], []
    uniform: dict[int, int] = {}
    n_a = n_b = 0
    for j in jobs:
        lay, nb = j.lay, 1 << j.lay.k
        tables = []
        if lay.k not in uniform:
            uniform[lay.k] = len(slot_b)
            tables.append((np.full(nb, T // nb), np.arange(nb)))
        table_of_e = np.full(1 << lay.ebits, uniform[lay.k], dtype=np.int64)
        for ex, qb in zip(j.ctx, j.b_tables, strict=False):
            table_of_e[ex] = len(slot_b) + len(tables)
            tables.append((rans.frequencies(qb), np.flatnonzero(qb != ABSENT)))
        for f, vals in tables:
            s_, r_ = _slots(f, n_b + np.arange(vals.size))
            slot_b.append(s_)
            rb.append(r_)
            hb.append(vals.astype(np.uint16))
            n_b += vals.size
        av = j.a_values.astype(np.int64)
        s_, r_ = _slots(j.fa, n_a + np.arange(av.size))
        slot_a.append(s_)
        ra.append(((table_of_e[av >> 1] * T) << 29) | r_)
        ha.append((((av & 1) << (lay.ebits + lay.k)) | ((av >> 1) << lay.k)).astype(np.uint16))
        n_a += av.size
    return tuple(np.concatenate(v) for v in (slot_a, ra, ha, slot_b, rb, hb))


def _decode(jobs: list[PlaneJob]) -> None:
    jobs = sorted(jobs, key=lambda j: (-(j.n // j.lanes), -(j.n % j.lanes)))
    slot_a, ra_tab, ha, slot_b, rb_tab, hb = _tables(jobs)
    lanes = np.array([j.lanes for j in jobs], dtype=np.int64)
    base = np.concatenate([[0], np.cumsum(lanes)])
    jid = np.repeat(np.arange(len(jobs)), lanes)
    state = np.concatenate([j.states.astype(np.int64) for j in jobs])
    nwords = np.array([j.words.size for j in jobs], dtype=np.int64)
    words = np.concatenate([j.words for j in jobs] + [np.zeros(int(base[-1]) + 1, np.uint16)])
    top = words.size - 1
    wend = np.cumsum(nwords)
    wp = wend - nwords
    for j in jobs:
        j.out = np.empty(j.n, dtype=np.uint16)
    ar = np.arange(int(base[-1]) + 1, dtype=np.int64)
    mask = T - 1
    for k0, k1, act in rans.segments(jobs, base):
        ja = jid[act]
        here, first, cols = rans.columns(ja)
        bext = np.concatenate([first, [ja.size]])
        toff = ja * T
        x = state[act]
        hwp = wp[here].copy()
        per_chunk = rans.chunk_rounds(ja.size)
        for c0 in range(k0, k1, per_chunk):
            rounds = min(k1, c0 + per_chunk) - c0
            ga = np.empty((rounds, ja.size), dtype=np.uint16)
            gb = np.empty((rounds, ja.size), dtype=np.uint16)
            for k in range(rounds):
                for half in (0, 1):  # A, then B
                    slot = x & mask
                    if half == 0:
                        ida = slot_a.take(slot + toff)
                        r = rec_a = ra_tab.take(ida)
                    else:
                        idb = slot_b.take((rec_a >> 29) + slot)  # the B table of this value's exponent
                        r = rb_tab.take(idb)
                    x >>= rans.PROB_BITS
                    x *= r & 0x7FFF
                    x += slot
                    x -= (r >> 15) & mask
                    sel = np.flatnonzero(x < rans.RANS_L)
                    if sel.size:
                        cuts = np.searchsorted(sel, bext)
                        cnt = cuts[1:] - cuts[:-1]
                        idx = ar[: sel.size] + np.repeat(hwp - cuts[:-1], cnt)
                        np.minimum(idx, top, out=idx)  # a stream that runs dry reads padding; the end check fails it
                        x[sel] = (x[sel] << 16) | words[idx]
                        hwp += cnt
                ga[k], gb[k] = ida, idb
            rans.scatter(jobs, ha.take(ga) | hb.take(gb), c0, cols)  # the value's bits above LOW
        state[act] = x
        wp[here] = hwp
    for i, j in enumerate(jobs):
        if int(wp[i]) != int(wend[i]):
            how = "ends early" if wp[i] > wend[i] else f"has {int(wend[i] - wp[i])} unused 16-bit words"
            raise FormatError(
                f"{j.what}: the planes rANS stream {how} (field 'words'); the file is truncated or corrupt"
            )
        st = state[base[i] : base[i + 1]]
        if int(st.min()) != rans.RANS_L or int(st.max()) != rans.RANS_L:
            raise FormatError(
                f"{j.what}: the rANS lanes did not end in their initial state (field 'stream'); the stream is corrupt"
            )
