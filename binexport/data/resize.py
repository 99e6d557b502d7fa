"""Any image to the 32x32 the network was trained on, in numpy: box (area) average down, bilinear up.

The method, per axis (rows and columns separately, the same for every channel):

- shrinking (the side is longer than 32): each output pixel is the mean of the input pixels its footprint
  covers, pixels cut by the footprint's edge weighted by the part inside (the area average of OpenCV's
  ``INTER_AREA`` and Pillow's ``BOX``): no aliasing, every input pixel counts once;
- growing (shorter than 32): bilinear interpolation with half-pixel centres (``align_corners=False``: OpenCV's
  ``INTER_LINEAR``), edges clamped;
- equal: untouched, so a 32x32 image reaches the model bit for bit as ``verify`` feeds it.

The result is rounded to uint8 (half away from zero after clipping), as CIFAR images are stored, and then
normalised like every other image (:func:`binexport.data.normalize`). An image is never stretched to a square
first: a non-square image is squeezed (the aspect ratio is not kept), as CIFAR's 32x32 crops were.
"""

from __future__ import annotations

import numpy as np

#: The side the models take.
SIDE = 32
#: Rows converted to float at a time while shrinking: memory holds a band, never the whole image in float.
_BAND_ROWS = 256
#: What ``predict`` and the docs call the method.
METHOD = "box (area) average when shrinking, bilinear (half-pixel centres) when growing, per axis; then uint8"


def axis_weights(n_in: int, n_out: int = SIDE) -> np.ndarray:
    """The (n_out, n_in) float64 matrix that resamples one axis: rows sum to 1.

    Raises:
        ValueError: a side below 1 (callers check images first).
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sides must be at least 1, got {n_in} -> {n_out}")
    w = np.zeros((n_out, n_in), np.float64)
    if n_in == n_out:
        np.fill_diagonal(w, 1.0)
    elif n_in > n_out:  # box: output i covers [i*s, (i+1)*s) of the input, s = n_in / n_out
        s = n_in / n_out
        edges = np.arange(n_out + 1) * s
        for i in range(n_out):
            a, b = edges[i], edges[i + 1]
            lo, hi = int(np.floor(a)), min(int(np.ceil(b)), n_in)
            for j in range(lo, hi):
                w[i, j] = min(b, j + 1) - max(a, j)
        w /= w.sum(axis=1, keepdims=True)
    else:  # bilinear, half-pixel centres, clamped
        pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        pos = np.clip(pos, 0, n_in - 1)
        j0 = np.floor(pos).astype(np.int64)
        j1 = np.minimum(j0 + 1, n_in - 1)
        frac = pos - j0
        rows = np.arange(n_out)
        np.add.at(w, (rows, j0), 1 - frac)
        np.add.at(w, (rows, j1), frac)
    return w


def resize_to_model(image: np.ndarray, side: int = SIDE) -> np.ndarray:
    """An (H, W, 3) uint8 image as (side, side, 3) uint8, by the module's method.

    Memory beyond the input: a band of :data:`_BAND_ROWS` rows in float64 and the (H, side, 3) column-resampled
    image (for a 1024x1024 image under 1 MiB), never the whole image in float.

    Example:
        >>> resize_to_model(np.zeros((300, 400, 3), np.uint8)).shape
        (32, 32, 3)
    """
    h, w = image.shape[:2]
    if (h, w) == (side, side):
        return np.ascontiguousarray(image, dtype=np.uint8)
    wx, wy = axis_weights(w, side), axis_weights(h, side)
    cols = np.empty((h, side, image.shape[2]), np.float64)
    for a in range(0, h, _BAND_ROWS):
        band = image[a : a + _BAND_ROWS].astype(np.float64)
        cols[a : a + _BAND_ROWS] = np.einsum("ow,hwc->hoc", wx, band)
    out = np.einsum("oh,hwc->owc", wy, cols)
    return np.floor(np.clip(out, 0, 255) + 0.5).astype(np.uint8)
