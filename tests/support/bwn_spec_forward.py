"""The network of a .bwn model file, written from docs/FORMAT.md section 4.2 alone (numpy, float64).

Independent of binexport: it takes what ``bwn_spec_reader.read`` decodes and the metadata, and nothing of
binexport's model, arch or runtimes. The tests compare its logits with binexport's reference runtime.
"""

from __future__ import annotations

import math

import numpy as np

#: Section 4.1's variant fields per family ("pytorch": the port, flags 0, no variant).
FIELDS = {
    "pytorch": (False, False, "symmetric", True, 1e-5),
    "mcdonnell-matlab": (True, True, "symmetric", False, 0.0),
    "mcdonnell-keras": (True, False, "tf-same", False, 1e-5),
    "pytorchcv": (False, False, "symmetric", True, 1e-5),
}
#: Section 4.2's outside normalisation (mean, std) per family without an input BN.
NORMALISATION = {
    "pytorch": ((125.3 / 255, 123.0 / 255, 113.9 / 255), (63.0 / 255, 62.1 / 255, 66.7 / 255)),
    "pytorchcv": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
}


def normalise(pixels: np.ndarray, family: str) -> np.ndarray:
    """(N, 3, H, W) pixels 0..255 -> the network's input ``x`` (section 4.2, "Input")."""
    if FIELDS[family][0]:
        return pixels.astype(np.float64)
    mean, std = (np.array(v).reshape(1, 3, 1, 1) for v in NORMALISATION[family])
    return (pixels / 255.0 - mean) / std


def _pad(v: np.ndarray, pads: tuple[int, int, int, int]) -> np.ndarray:
    top, left, bottom, right = pads
    return np.pad(v, ((0, 0), (0, 0), (top, bottom), (left, right)))


def _windows(v: np.ndarray, k: int, stride: int) -> np.ndarray:
    """(N, C, Ho, Wo, k, k) views of the k x k windows at ``stride``."""
    w = np.lib.stride_tricks.sliding_window_view(v, (k, k), axis=(2, 3))
    return w[:, :, ::stride, ::stride]


def forward(tensors: dict[str, np.ndarray], metadata: dict, x: np.ndarray) -> np.ndarray:
    """Logits (N, classes) of the model whose decoded tensors and metadata are given, on input ``x``."""
    family = metadata.get("variant", {}).get("family", "pytorch") if "variant" in metadata else "pytorch"
    input_bn, input_relu, padding, include_pad, eps = FIELDS[family]
    zeros = metadata.get("zero_positions", {})

    def weight(name: str) -> np.ndarray:
        t = tensors[name]
        if t.dtype != bool:
            return t.astype(np.float64)
        s = math.sqrt(2.0 / math.prod(t.shape[1:]))
        w = np.where(t, s, -s)
        w.reshape(-1)[zeros.get(name, [])] = 0.0
        return w

    def bn(v: np.ndarray, p: str) -> np.ndarray:
        c = (1, -1, 1, 1)
        mean, var = (tensors[f"{p}.running_{k}"].astype(np.float64).reshape(c) for k in ("mean", "var"))
        gamma = tensors[f"{p}.weight"].astype(np.float64).reshape(c) if f"{p}.weight" in tensors else 1.0
        beta = tensors[f"{p}.bias"].astype(np.float64).reshape(c) if f"{p}.bias" in tensors else 0.0
        return (v - mean) / np.sqrt(var + eps) * gamma + beta

    def pads(k: int, stride: int) -> tuple[int, int, int, int]:
        if k == 1:
            return (0, 0, 0, 0)
        return (0, 0, 1, 1) if stride == 2 and padding == "tf-same" else (1, 1, 1, 1)

    def conv(v: np.ndarray, name: str, stride: int = 1) -> np.ndarray:
        k = weight(name)
        win = _windows(_pad(v, pads(k.shape[-1], stride)), k.shape[-1], stride)
        return np.einsum("nchwab,ocab->nohw", win, k, optimize=True)

    def pool(v: np.ndarray) -> np.ndarray:
        p = pads(3, 2)
        total = _windows(_pad(v, p), 3, 2).sum(axis=(-1, -2))
        if include_pad:
            return total / 9.0
        real = _windows(_pad(np.ones((1, 1) + v.shape[2:]), p), 3, 2).sum(axis=(-1, -2))
        return total / real

    relu = lambda v: np.maximum(v, 0.0)  # noqa: E731
    h = x.astype(np.float64)
    if input_bn:
        h = bn(h, "input_bn")
        if input_relu:
            h = relu(h)
    h = conv(h, "conv0")
    n = sum(1 for k in tensors if k.startswith("group0.block") and k.endswith(".conv1"))
    for g in range(3):
        for b in range(n):
            p = f"group{g}.block{b}."
            stride = 2 if g > 0 and b == 0 else 1
            t = conv(relu(bn(h, p + "bn0")), p + "conv0", stride)
            t = conv(relu(bn(t, p + "bn1")), p + "conv1")
            if stride == 2:
                d = pool(h)
                h = np.concatenate([d, np.zeros_like(d)], axis=1)
            h = h + t
    h = bn(conv(relu(bn(h, "bn")), "conv_last"), "bn_last")
    return h.mean(axis=(2, 3))
