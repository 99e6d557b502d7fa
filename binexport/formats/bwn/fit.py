"""The writer's choices for ``rans-ref``: which group references which, and the bit cost ``wq``.

None of this is in the format: a reader takes parents and wq as written. The
parents are a maximum spanning tree over the agreement of groups' sign
patterns (a flipped parent counts when it agrees by disagreeing); wq and which
groups keep their parent minimise the ideal code length of the model
P(s | r) ~ P0(s) 2^(-wq * popcount(s XOR r) / 16) (docs/FORMAT.md, 8.4).
"""

from __future__ import annotations

import numpy as np

from binexport.formats.bwn import rans


def parents(bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximum spanning tree over |agreement| of groups (rows of the bool ``bits``): each group's parent and flip."""
    g = bits.shape[0]
    x = bits.reshape(g, -1).astype(np.float32) * 2 - 1
    agree = x @ x.T
    w = np.abs(agree)
    parent = np.full(g, -1, dtype=np.int64)
    in_tree = np.zeros(g, dtype=bool)
    in_tree[0] = True
    best, src = w[0].copy(), np.zeros(g, dtype=np.int64)
    for _ in range(g - 1):
        j = int(np.argmax(np.where(in_tree, -np.inf, best)))
        in_tree[j] = True
        parent[j] = src[j]
        better = ~in_tree & (w[j] > best)
        best[better] = w[j][better]
        src[better] = j
    flip = (agree[np.arange(g), np.maximum(parent, 0)] < 0) & (parent >= 0)
    return parent, flip.astype(np.int64)


def weight(
    sym: np.ndarray, parent: np.ndarray, flip: np.ndarray, k: int, q0: np.ndarray, ham: np.ndarray
) -> tuple[int, np.ndarray, float]:
    """wq and the groups that keep a parent, minimising the ideal code length of P(s|r) ~ P0(s) 2^(-wq*ham/16)."""
    a = 1 << k
    present = q0 != rans.ABSENT
    p0 = np.where(present, np.exp2(-q0.astype(np.float64) / 16), 0.0)
    p0 /= p0.sum()
    lp0 = np.log2(np.where(present, p0, 1.0))
    mass = np.stack([np.where(ham == h, p0[None, :], 0.0).sum(axis=1) for h in range(k + 1)], axis=1)  # (a, k+1)
    ref = sym[np.maximum(parent, 0)] ^ (flip[:, None] * (a - 1))
    h = ham[ref, sym]
    base = -lp0[sym].sum(axis=1)
    hsum = h.sum(axis=1)
    use = parent >= 0
    wq, cost = 0, float(base.sum())
    for _ in range(2):
        if not use.any():
            return 0, use, float(base.sum())
        nref = np.bincount(ref[use].ravel(), minlength=a)
        fixed = float(base[use].sum())
        hs = float(hsum[use].sum())

        def total(w: int, fixed: float = fixed, hs: float = hs, nref: np.ndarray = nref) -> float:
            lz = np.log2(mass @ np.exp2(-np.arange(k + 1) * w / 16))
            return fixed + w / 16 * hs + float(nref @ lz)

        wq = min(range(1, 96), key=total)
        lz = np.log2(mass @ np.exp2(-np.arange(k + 1) * wq / 16))
        ref_cost = base + wq / 16 * hsum + lz[ref].sum(axis=1)
        use = (parent >= 0) & (ref_cost < base)
        cost = float(np.where(use, ref_cost, base).sum())
    return wq, use, cost
