"""Tiny McDonnell-layout .mat files, and an independent numpy forward pass of his recipe (the tests' oracle).

Written from docs/research/mcdonnell-conventions.md, section 2, on the raw arrays as the .mat holds them
(MatConvNet / TF (kh, kw, in, out) bits, MATLAB [mean, sigma] moments, Keras [gamma; beta; mean; var]
rows); it imports nothing from binexport, so a convention binexport gets wrong shows up as a difference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io


def tiny_net(
    depth: int = 8, widths: tuple[int, int, int] = (4, 8, 16), classes: int = 10, seed: int = 0
) -> dict[str, list]:
    """Random bits (kh, kw, in, out) of every conv, and per BN (gamma, beta, mean, var) in network order."""
    rng = np.random.default_rng(seed)
    n = (depth - 2) // 6
    shapes = [(3, 3, 3, widths[0])]
    for g, w in enumerate(widths):
        for b in range(n):
            cin = widths[g - 1] if (g > 0 and b == 0) else w
            shapes += [(3, 3, cin, w), (3, 3, w, w)]
    shapes.append((1, 1, widths[2], classes))
    bits = [rng.random(s) < 0.5 for s in shapes]
    chans = [3] + [s[2] for s in shapes[1:]] + [classes]
    bns = [(rng.uniform(0.6, 0.7, 3), rng.uniform(1.2, 1.5, 3), rng.uniform(115, 130, 3), rng.uniform(4000, 4700, 3))]
    for c in chans[1:]:
        bns.append((np.ones(c), np.zeros(c), rng.normal(0, 0.5, c), rng.uniform(0.5, 2.0, c)))
    return {"bits": bits, "bns": [tuple(np.float32(a) for a in bn) for bn in bns]}


def write_matlab(path: Path, net: dict[str, list], **override: object) -> Path:
    """The MATLAB/MatConvNet layout: cells of logical bits, [mean, sigma] Moments with sigma = sqrt(var + 1e-5)."""
    bits, bns = net["bits"], net["bns"]
    k = len(bits)
    per = (k - 2) // 6
    cell = np.empty((1, k), object)
    for i, b in enumerate(bits):
        cell[0, i] = b

    def col(vals: list) -> np.ndarray:
        c = np.empty((len(vals), 1), object)
        for i, v in enumerate(vals):
            c[i, 0] = v
        return c

    d = {
        "BinaryWeights": cell,
        "LayerWeights": np.array([[np.sqrt(2.0 / np.prod(b.shape[:3]))] for b in bits], np.float32),
        "Stride": np.array([[2.0 if i in (1 + 2 * per, 1 + 4 * per) else 1.0 for i in range(k)]]),
        "Padding": np.array([[float(b.shape[0] // 2) for b in bits]]),
        "W": np.array([[float(b.shape[0]) for b in bits]]),
        "NumChannels": np.array([[3.0] + [float(b.shape[3]) for b in bits]]),
        "BNG": col([g.reshape(-1, 1) for g, _, _, _ in bns]),
        "BNB": col([b.reshape(-1, 1) for _, b, _, _ in bns]),
        "Moments": col([np.stack([m, np.sqrt(v + 1e-5)], 1).astype(np.float32) for _, _, m, v in bns]),
        "PercentCorrectTest": np.array([[10.0, 50.0]]),
    }
    d.update(override)
    scipy.io.savemat(path, d, do_compression=True)
    return path


def write_keras(path: Path, net: dict[str, list], start: int = 6) -> Path:
    """The tf.keras layout: conv2d_N (1, kh, kw, in, out) logical, batch_normalization_v1_N rows; shuffled order."""
    d = {}
    for i, b in enumerate(net["bits"]):
        d[f"conv2d_{start + i}"] = b[None]
    for i, (g, b, m, v) in enumerate(net["bns"]):
        d[f"batch_normalization_v1_{start + 1 + i}"] = np.stack([g, b, m, v] if i == 0 else [m, v]).astype(np.float32)
    keys = list(d)
    np.random.default_rng(1).shuffle(keys)
    scipy.io.savemat(path, {k: d[k] for k in keys}, do_compression=True)
    return path


def _conv(x: np.ndarray, bits: np.ndarray, stride: int, pads: tuple[int, int, int, int]) -> np.ndarray:
    """Cross-correlation of NCHW x with (kh, kw, in, out) bits as +-sqrt(2/fan_in); pads (top, bottom, left, right)."""
    kh, kw, cin, cout = bits.shape
    w = np.where(bits, 1.0, -1.0) * np.sqrt(2.0 / (kh * kw * cin))
    t, b, left, r = pads
    x = np.pad(x, ((0, 0), (0, 0), (t, b), (left, r)))
    ho, wo = (x.shape[2] - kh) // stride + 1, (x.shape[3] - kw) // stride + 1
    out = np.zeros((x.shape[0], cout, ho, wo))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i : i + stride * ho : stride, j : j + stride * wo : stride]
            out += np.einsum("nchw,co->nohw", patch, w[i, j])
    return out


def _pool(x: np.ndarray, pads: tuple[int, int, int, int]) -> np.ndarray:
    """3x3 stride-2 average over the real pixels only (padding excluded from the divisor)."""
    t, b, left, r = pads
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (left, r)))
    ones = np.pad(np.ones(x.shape[2:]), ((t, b), (left, r)))
    ho, wo = (xp.shape[2] - 3) // 2 + 1, (xp.shape[3] - 3) // 2 + 1
    s, c = np.zeros(x.shape[:2] + (ho, wo)), np.zeros((ho, wo))
    for i in range(3):
        for j in range(3):
            s += xp[:, :, i : i + 2 * ho : 2, j : j + 2 * wo : 2]
            c += ones[i : i + 2 * ho : 2, j : j + 2 * wo : 2]
    return s / c


def forward(net: dict[str, list], pixels_nhwc: np.ndarray, layout: str) -> np.ndarray:
    """Logits (N, classes) in float64: MATLAB (symmetric pad 1, input ReLU) or Keras (TF 'same': 0 before, 1 after)."""
    bits, bns = net["bits"], net["bns"]
    per = (len(bits) - 2) // 6

    def bn(x: np.ndarray, k: int) -> np.ndarray:
        g, b, m, v = (np.asarray(a, np.float64).reshape(1, -1, 1, 1) for a in bns[k])
        return g * (x - m) / np.sqrt(v + 1e-5) + b

    down = (1, 1, 1, 1) if layout == "matlab" else (0, 1, 0, 1)
    x = bn(pixels_nhwc.astype(np.float64).transpose(0, 3, 1, 2), 0)
    if layout == "matlab":
        x = np.maximum(x, 0)
    r = _conv(x, bits[0], 1, (1, 1, 1, 1))
    k = 1
    for blk in range(3 * per):
        stride = 2 if blk in (per, 2 * per) else 1
        h = _conv(np.maximum(bn(r, k), 0), bits[k], stride, down if stride == 2 else (1, 1, 1, 1))
        h = _conv(np.maximum(bn(h, k + 1), 0), bits[k + 1], 1, (1, 1, 1, 1))
        if stride == 2:
            p = _pool(r, down)
            r = np.concatenate([p, np.zeros_like(p)], 1)
        r = r + h
        k += 2
    o = bn(_conv(np.maximum(bn(r, k), 0), bits[k], 1, (0, 0, 0, 0)), k + 1)
    return o.mean(axis=(2, 3))
