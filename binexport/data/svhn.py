"""The SVHN test set: the official ``test_32x32.mat`` (cropped digits), streamed through the bounded MAT reader.

The file is a level-5 MAT file (MATLAB's default ``-v7``) with two variables: ``X``, uint8 of shape
(32, 32, 3, N) in MATLAB's column-major order (so each image is one run of 3,072 bytes: channel, then column,
then row), and ``y``, N x 1 labels 1..10 where 10 means the digit 0. Only headers are read to open it; ``y``
is read whole (8 bytes an image at most); ``X`` is inflated a slice at a time as ``verify`` asks for images, so
memory holds the mapped file and one chunk of decoded images, never the whole set (80 MB decoded for the
26,032 test images). Every size is checked against the file by :mod:`binexport.formats.mat.mat5`; a MATLAB
v7.3 (HDF5) file is refused.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable
from pathlib import Path

import numpy as np

from binexport.data.cifar import Dataset, default_root
from binexport.errors import InputError
from binexport.fileio import check_input
from binexport.formats.mat import mat5
from binexport.formats.mat.source import Budget

NAME = "SVHN"
#: The official test file, directly under the data root (torchvision's SVHN layout).
FILE = "test_32x32.mat"
URL = "http://ufldl.stanford.edu/housenumbers/test_32x32.mat"
NUM_CLASSES = 10
#: Class names: label k is the digit k (the file's label 10 is read as 0).
LABELS: tuple[str, ...] = tuple(str(d) for d in range(10))
#: The official sets hold 26,032 (test), 73,257 (train) and 531,131 (extra) images.
MAX_IMAGES = 1_000_000
#: Decoded bytes allowed per file byte: SVHN's images inflate about 1.25x; a zlib bomb gets far less than it asks.
DECODE_RATIO = 16
_IMAGE = 32 * 32 * 3
_HDF5 = b"\x89HDF\r\n\x1a\n"


def load_svhn(root: str | Path | None = None, *, download: bool = False) -> Dataset:
    """The SVHN test set from ``root/test_32x32.mat``, images decoded only when sliced (see :class:`SvhnImages`).

    Args:
        root: the data root (default ``$BINEXPORT_DATA`` or ``~/.cache/binexport/data``).
        download: refused: binexport downloads the CIFAR archives only (their md5 sums are published).

    Returns:
        A :class:`Dataset` named ``SVHN`` with 10 classes, labels 0..9 (the digits).

    Raises:
        InputError: the file is missing, a v7.3 (HDF5) file, or any variable or size disagrees with the layout.

    Example:
        >>> ds = load_svhn("~/data")           # doctest: +SKIP
        >>> ds.images[:8].shape, ds.labels[:8]  # doctest: +SKIP
        ((8, 32, 32, 3), array([5, 2, 1, 0, 6, 1, 9, 1]))
    """
    root = Path(root).expanduser() if root is not None else default_root()
    path = root / FILE
    if not path.is_file():
        how = "binexport downloads the CIFAR archives only; " if download else ""
        raise InputError(
            f"{path}: SVHN test set not found ({how}expected the official {FILE} directly under the data root "
            f"{root}); download it from {URL} into that folder"
        )
    p = check_input(path)
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(128)
        if head.startswith(b"MATLAB 7.3") or head.startswith(_HDF5) or head[124:126] == b"\x00\x02":
            raise InputError(
                f"{p}: a MATLAB v7.3 (HDF5) file; binexport reads the official level-5 {FILE} (in MATLAB, "
                "save it with -v7)"
            )
        if not head.startswith(b"MATLAB 5.0 MAT-file"):
            raise InputError(
                f"{p}: not a MAT file (starts with {head[:12]!r}); expected the official {FILE}, whose text "
                "header starts 'MATLAB 5.0 MAT-file'"
            )
        f.seek(0)
        data: bytes | mmap.mmap = f.read() if size < 4096 else mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    budget = Budget(str(p), DECODE_RATIO * max(size, 1 << 20), f" ({DECODE_RATIO} x the file)")
    mat = mat5.MatFile(data, str(p), budget)  # type: ignore[arg-type]  # an mmap is a buffer like bytes
    n = _check_layout(mat, str(p))
    labels = _labels(mat, n, str(p))
    return Dataset(NAME, SvhnImages(mat, n), labels, NUM_CLASSES, str(p))


def _check_layout(mat: mat5.MatFile, where: str) -> int:
    """The image count N, once ``X`` is uint8 (32, 32, 3, N) and ``y`` is N x 1."""
    x, y = mat.vars.get("X"), mat.vars.get("y")
    if x is None or y is None:
        found = ", ".join(sorted(mat.vars)[:6]) or "none"
        raise InputError(f"{where}: expected the variables X (images) and y (labels) of SVHN's {FILE}, found {found}")
    dims = x.dims + (1,) * (4 - len(x.dims))  # MATLAB drops a trailing 1: one image is 32 x 32 x 3
    if x.cls != 9 or x.logical or x.complex or len(dims) != 4 or dims[:3] != (32, 32, 3):
        raise InputError(
            f"{where}: X is a {x.class_name} array of shape {list(x.dims)}; expected uint8 32 x 32 x 3 x N "
            "(the official cropped-digits layout)"
        )
    n = dims[3]
    if not 0 < n <= MAX_IMAGES:
        raise InputError(f"{where}: X holds {n:,} images; expected 1 to {MAX_IMAGES:,}")
    if sorted(y.dims) != [1, n] or len(y.dims) != 2:
        raise InputError(f"{where}: y has shape {list(y.dims)}; expected {n} x 1, one label per image of X")
    return n


def _labels(mat: mat5.MatFile, n: int, where: str) -> np.ndarray:
    y = mat.load(mat.vars["y"])
    if not isinstance(y, np.ndarray):  # _check_layout saw a numeric class; load would have refused a cell
        raise InputError(f"{where}: y is not a numeric array")
    v = y.reshape(-1).astype(np.float64)
    bad = ~np.isin(v, np.arange(1, 11))
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"{where}: y[{i + 1}] is {v[i]:g}; SVHN's labels are 1..10 (10 is the digit 0)")
    return (v % 10).astype(np.int64)


class SvhnImages:
    """The images of ``X``, decoded on demand: ``images[a:b]`` is an (n, 32, 32, 3) uint8 array.

    Slices are read in order from one stream (``verify`` asks for consecutive chunks); a slice before the
    stream's position starts it again, one after it skips forward a chunk at a time.
    """

    def __init__(self, mat: mat5.MatFile, n: int) -> None:
        self.mat, self.n = mat, n
        self._read: Callable[[int], bytes] | None = None
        self._next = 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: slice) -> np.ndarray:
        if not isinstance(index, slice):
            raise TypeError("SvhnImages takes slices: images[a:b]")
        start, stop, step = index.indices(self.n)
        if step != 1:
            raise TypeError("SvhnImages takes contiguous slices")
        count = max(0, stop - start)
        if count == 0:
            return np.zeros((0, 32, 32, 3), np.uint8)
        if self._read is None or start < self._next:
            self._read, self._next = self.mat.stream(self.mat.vars["X"])[1], 0
        while self._next < start:  # skip forward, a bounded chunk at a time
            k = min(start - self._next, 256)
            self._take(k)
        raw = self._take(count)
        # column-major (32, 32, 3, N): each image is [channel][column][row]
        return np.ascontiguousarray(np.frombuffer(raw, np.uint8).reshape(count, 3, 32, 32).transpose(0, 3, 2, 1))

    def _take(self, k: int) -> bytes:
        assert self._read is not None  # set by __getitem__ (not a validation)
        raw = self._read(k * _IMAGE)
        if len(raw) != k * _IMAGE:
            raise InputError(
                f"{self.mat.label}: X ends {len(raw):,} bytes into images it declares; the file is damaged"
            )
        self._next += k
        return raw
