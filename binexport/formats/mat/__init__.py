"""The paper author's own 1-bit WRNs: M. D. McDonnell's MATLAB/MatConvNet and tf.keras ``.mat`` files (read only).

Both are level-5 MAT files (``MATLAB 5.0 MAT-file`` at byte 0), read by binexport's own bounded parser
(:mod:`.mat5`, not scipy: see there) and told apart by the variables inside (names, shapes and classes
from their headers, read without the data), never by the file name:

* **matlab** (``TrainedWideResNet20-10_CIFAR*_1-bit-per-weight-4MB.mat``): ``BinaryWeights`` (cell of logical
  ``(kh, kw, in, out)``), ``LayerWeights`` (each conv's scale), ``Stride``, ``Padding``, ``NumChannels``, and
  per BN ``BNG`` / ``BNB`` (gamma, beta) and ``Moments`` (``[mean, sigma]``, sigma = sqrt(var + 1e-5)).
* **keras** (``CIFAR*_allparams.mat``, written by ``scipy.io.savemat``): ``conv2d[_N]`` (logical
  ``(1, kh, kw, in, out)``) and ``batch_normalization[_v1]_N`` (``4 x 3`` = gamma, beta, mean, var for the
  input BN; ``2 x C`` = mean, var for the rest), in network order by numeric suffix.

Every convention (pixel range, padding, pool divisor, eps, bit polarity) is proven in
docs/research/mcdonnell-conventions.md; this module maps the tensors onto binexport's canonical names and
leaves the arithmetic to the architecture variant (:data:`binexport.arch.VARIANTS`).

Memory bound: the whole file (at most :data:`MAX_FILE_BYTES`) is read once; all the variables read decode
to at most :func:`decode_limit` bytes (16 x the file size, at least 32 MiB), charged before each is inflated;
the peak is about the file plus three times that (raw bytes, sign arrays, their transposed copies).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from binexport.errors import InputError
from binexport.fileio import check_input
from binexport.formats.mat import mat5
from binexport.formats.mat.source import Budget
from binexport.model import Arch, BinaryWeight, Model, Source

MAGIC = b"MATLAB 5.0 MAT-file"
_HDF5 = b"\x89HDF\r\n\x1a\n"
#: The published files are 3.7-4.1 MB; anything past this is not one of them (the file is read whole).
MAX_FILE_BYTES = 64 << 20
#: Decoded bytes allowed per file byte: McDonnell's files decode to 6.6-7.3 x their size (zlib on logical
#: arrays of about one bit of entropy a byte), so an honest file gets twice that, a zlib bomb far less.
DECODE_RATIO = 16
DECODE_FLOOR = 32 << 20
_MATLAB_VARS = ("BinaryWeights", "LayerWeights", "Stride", "Padding", "NumChannels", "BNG", "BNB", "Moments")
_KERAS_CONV = re.compile(r"conv2d(?:_(\d+))?$")
_KERAS_BN = re.compile(r"batch_normalization(?:_v1)?(?:_(\d+))?$")


def sniff(head: bytes) -> bool:
    """A MAT file's text header (level 5, or a v7.3 file, which :func:`read` refuses by name)."""
    return head.startswith(MAGIC) or head.startswith(b"MATLAB 7.3 MAT-file")


def read(path: str | Path) -> Model:
    """A Model from one of McDonnell's ``.mat`` files (either layout, detected from the variables inside).

    Args:
        path: a MATLAB or Keras layout ``.mat`` file.

    Returns:
        A binarised :class:`Model` of family ``mcdonnell-matlab`` or ``mcdonnell-keras``.

    Raises:
        InputError: a v7.3 (HDF5) file, a truncated or damaged file, a file over 64 MiB, a MAT file of
            neither layout, or tensors that do not form a WRN (each with what was expected and found).

    Example:
        >>> m = read("TrainedWideResNet20-10_CIFAR10_1-bit-per-weight-4MB.mat")   # doctest: +SKIP
        >>> m.arch.name, m.arch.family                                             # doctest: +SKIP
        ('WRN-20-10', 'mcdonnell-matlab')
    """
    p = check_input(path)
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
        raise InputError(
            f"{p}: {size:,} bytes; McDonnell's .mat models are about 4 MB and binexport reads "
            f".mat files of at most {MAX_FILE_BYTES >> 20} MiB"
        )
    with open(p, "rb") as f:
        head = f.read(520)
    if head[512:520] == _HDF5 or head.startswith(b"MATLAB 7.3"):
        raise InputError(
            f"{p}: a MATLAB v7.3 (HDF5) MAT file; binexport reads level-5 MAT files, as McDonnell's "
            "models are: re-save it in MATLAB with save(..., '-v7')"
        )
    if len(head) < 128:
        raise InputError(f"{p}: {size} bytes, shorter than the 128-byte MAT-file header; the file is truncated")
    mat = _open(p, size)
    names = {n: (v.dims, v.class_name) for n, v in mat.vars.items()}
    if set(_MATLAB_VARS) <= set(names):
        return _read_matlab(p, size, mat)
    convs = [n for n in names if _KERAS_CONV.match(n)]
    bns = [n for n in names if _KERAS_BN.match(n)]
    if convs and bns:
        return _read_keras(p, size, mat, names, convs, bns)
    found = ", ".join(sorted(names)[:6]) or "no variables"
    raise InputError(
        f"{p}: a MAT file of neither McDonnell layout: expected the MATLAB variables "
        f"({', '.join(_MATLAB_VARS[:3])}, ...) or Keras conv2d_N and batch_normalization_N, "
        f"found {found}"
    )


def decode_limit(size: int) -> int:
    """The most bytes a ``size``-byte ``.mat`` file may decode to (:data:`DECODE_RATIO` x, >= :data:`DECODE_FLOOR`)."""
    return max(DECODE_FLOOR, DECODE_RATIO * size)


def _open(p: Path, size: int) -> mat5.MatFile:
    with open(p, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) != size:
        raise InputError(f"{p}: changed while it was read ({size:,} bytes, then {len(data):,}); read it again")
    rule = f" ({DECODE_RATIO} x its size, at least {DECODE_FLOOR >> 20} MiB; McDonnell's decode to about 7 x)"
    return mat5.MatFile(data, str(p), Budget(str(p), decode_limit(size), rule))


def _read_matlab(p: Path, size: int, mat: mat5.MatFile) -> Model:
    m = {n: mat.load(mat.vars[n]) for n in _MATLAB_VARS}
    cells = _cells(m["BinaryWeights"], p, "BinaryWeights")
    bits = [_bits(c, 4, p, f"BinaryWeights{{{i + 1}}}") for i, c in enumerate(cells)]
    moments = [_floats(c, p, f"Moments{{{i + 1}}}") for i, c in enumerate(_cells(m["Moments"], p, "Moments"))]
    gammas = [_floats(c, p, f"BNG{{{i + 1}}}").ravel() for i, c in enumerate(_cells(m["BNG"], p, "BNG"))]
    betas = [_floats(c, p, f"BNB{{{i + 1}}}").ravel() for i, c in enumerate(_cells(m["BNB"], p, "BNB"))]
    if not (len(moments) == len(gammas) == len(betas) == len(bits) + 1):
        raise InputError(
            f"{p}: {len(bits)} convs need {len(bits) + 1} BNs, found Moments {len(moments)}, "
            f"BNG {len(gammas)}, BNB {len(betas)}"
        )
    bns: list[tuple[np.ndarray, ...]] = []
    for i, mo in enumerate(moments):
        if mo.ndim != 2 or mo.shape[1] != 2 or gammas[i].shape != (mo.shape[0],) or betas[i].shape != gammas[i].shape:
            raise InputError(
                f"{p}: BN {i + 1} has Moments {mo.shape}, BNG {gammas[i].shape}, BNB {betas[i].shape}; "
                "expected (C, 2) [mean, sigma], (C, 1) and (C, 1)"
            )
        with np.errstate(over="ignore"):
            var = (mo[:, 1].astype(np.float64) ** 2).astype(np.float32)  # sigma holds eps: var = sigma^2, eps 0
        if not np.isfinite(var).all():
            raise InputError(
                f"{p}: Moments{{{i + 1}}} has a sigma whose square overflows single precision "
                f"(largest |sigma| {float(np.abs(mo[:, 1]).max()):.3g}); expected finite statistics"
            )
        bns.append((gammas[i], betas[i], np.ascontiguousarray(mo[:, 0]), var))
    signs = [np.ascontiguousarray(b.transpose(3, 2, 0, 1)) for b in bits]  # (kh, kw, in, out) -> (out, in, kh, kw)
    model = _assemble(p, size, "mcdonnell-matlab", "matlab-mat", signs, bns)
    _check_matlab_geometry(p, model, m, signs)
    return model


def _read_keras(
    p: Path,
    size: int,
    mat: mat5.MatFile,
    names: dict[str, tuple[tuple[int, ...], str]],
    convs: list[str],
    bns: list[str],
) -> Model:
    bad = [f"{n} {names[n][0]}" for n in convs if len(names[n][0]) != 5 or names[n][0][0] != 1]
    bad += [f"{n} {names[n][0]}" for n in bns if len(names[n][0]) != 2 or names[n][0][0] not in (2, 4)]
    if bad:
        raise InputError(
            f"{p}: Keras layout with wrong shapes: {', '.join(bad[:3])}; expected conv2d_N "
            "(1, kh, kw, in, out) and batch_normalization_N (4, 3) or (2, C)"
        )
    convs.sort(key=lambda n: int(_KERAS_CONV.match(n).group(1) or 0))  # type: ignore[union-attr]
    bns.sort(key=lambda n: int(_KERAS_BN.match(n).group(1) or 0))  # type: ignore[union-attr]
    m = {n: mat.load(mat.vars[n]) for n in convs + bns}
    signs = [np.ascontiguousarray(_bits(m[n], 5, p, n)[0].transpose(3, 2, 0, 1)) for n in convs]
    rows = [_floats(m[n], p, n) for n in bns]
    if len(rows) != len(signs) + 1 or rows[0].shape != (4, 3) or any(r.shape[0] != 2 for r in rows[1:]):
        raise InputError(
            f"{p}: {len(signs)} conv2d variables need {len(signs) + 1} batch_normalization "
            f"variables, the first (4, 3) and the rest (2, C); found {[r.shape for r in rows][:4]}..."
        )
    first = [np.ascontiguousarray(r) for r in rows[0]]
    ones = [(np.ones(r.shape[1], np.float32), np.zeros(r.shape[1], np.float32)) for r in rows[1:]]
    stats = [
        (g, b, np.ascontiguousarray(r[0]), np.ascontiguousarray(r[1]))
        for (g, b), r in zip(ones, rows[1:], strict=False)
    ]
    return _assemble(p, size, "mcdonnell-keras", "keras-mat", signs, [tuple(first), *stats])


def _cells(arr: Any, p: Path, what: str) -> list[Any]:
    if not isinstance(arr, list):
        raise InputError(f"{p}: {what} is a {arr.dtype} array of shape {arr.shape}; expected a MATLAB cell array")
    return arr


def _array(arr: Any, p: Path, what: str) -> np.ndarray:
    if isinstance(arr, list):
        raise InputError(f"{p}: {what} is a cell array of {len(arr)} elements; expected a numeric array")
    return np.asarray(arr)


def _bits(arr: Any, ndim: int, p: Path, what: str) -> np.ndarray:
    """Sign bits (True = +1) from a logical array of ``ndim`` dimensions (MATLAB drops trailing 1s: pad them)."""
    a = _array(arr, p, what)
    if a.dtype not in (np.uint8, np.bool_) or not 2 <= a.ndim <= ndim:
        raise InputError(
            f"{p}: {what} is {a.dtype} of {a.ndim} dimensions; expected logical sign bits of {ndim} dimensions"
        )
    a = a.reshape(a.shape + (1,) * (ndim - a.ndim))
    if a.dtype == np.uint8 and a.size and int(a.max()) > 1:
        raise InputError(f"{p}: {what} holds the value {int(a.max())}; sign bits are 0 or 1")
    return a != 0


def _floats(arr: Any, p: Path, what: str) -> np.ndarray:
    """A 2-D single array, finite *after* the conversion to float32 (1e300 is finite in double, not in single)."""
    a = _array(arr, p, what)
    if a.dtype not in (np.float32, np.float64) or a.ndim != 2:
        raise InputError(f"{p}: {what} is {a.dtype} of shape {a.shape}; expected a 2-D single array")
    with np.errstate(over="ignore", invalid="ignore"):
        a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise InputError(f"{p}: {what} holds NaN or infinite values (as single precision); expected finite statistics")
    return a


def _ints(arr: Any, p: Path, what: str) -> list[int]:
    """A numeric geometry row (Stride, Padding, NumChannels) as small whole numbers."""
    a = _array(arr, p, what)
    if a.dtype.kind not in "fiu":
        raise InputError(f"{p}: {what} is a {a.dtype} array; expected a numeric row")
    v = a.ravel().astype(np.float64)
    if not (np.isfinite(v).all() and (v == np.round(v)).all() and (np.abs(v) < 1 << 31).all()):
        raise InputError(f"{p}: {what} holds {v[:4].tolist()}...; expected whole numbers")
    return v.astype(np.int64).tolist()


def _assemble(
    p: Path, size: int, family: str, layout: str, signs: list[np.ndarray], bns: list[tuple[np.ndarray, ...]]
) -> Model:
    """Canonical names: conv k -> conv0, group{g}.block{b}.conv0/conv1, conv_last; BN k precedes conv k."""
    n_convs = len(signs)
    if n_convs < 8 or (n_convs - 2) % 6:
        raise InputError(f"{p}: {n_convs} binary convs; a WRN of depth 6n+2 has 6n+2 (20 for WRN-20)")
    walk = Arch.of(n_convs, (1, 1, 1), 1, family).blocks()  # names and strides only: widths come from shapes
    conv_names = ["conv0"] + [b.prefix + c for b in walk for c in ("conv0", "conv1")]
    bn_names = ["input_bn"] + [b.prefix + c for b in walk for c in ("bn0", "bn1")]
    conv_names.append("conv_last")
    bn_names += ["bn", "bn_last"]
    floats: dict[str, np.ndarray] = {}
    for name, (gamma, beta, mean, var) in zip(bn_names, bns, strict=False):
        if name == "input_bn":
            floats["input_bn.weight"], floats["input_bn.bias"] = gamma, beta
        elif not (np.all(gamma == 1) and np.all(beta == 0)):
            raise InputError(
                f"{p}: BN {name!r} has learned gamma/beta; McDonnell's inner BNs have none "
                "(gamma 1, beta 0), so this is not one of his models"
            )
        if np.any(var <= 0):
            raise InputError(f"{p}: BN {name!r} has a variance <= 0; expected positive statistics")
        floats[name + ".running_mean"], floats[name + ".running_var"] = mean, var
    shapes = {
        **{k: v.shape for k, v in floats.items()},
        **{n: s.shape for n, s in zip(conv_names, signs, strict=False)},
    }
    arch = Arch.infer(shapes, family)
    return Model(
        arch,
        True,
        floats,
        {n: BinaryWeight(s) for n, s in zip(conv_names, signs, strict=False)},
        0,
        Source("mat", str(p), size, "", {"compressed MAT variables": size}, layout),
        {"binarized_from": f"{layout} layout"},
    )


def _check_matlab_geometry(p: Path, model: Model, m: dict[str, Any], signs: list[np.ndarray]) -> None:
    """What the MATLAB file states (scales, strides, padding, channels) MUST be what binexport computes."""
    a = model.arch
    scales = _floats(m["LayerWeights"], p, "LayerWeights").ravel()
    stride = _ints(m["Stride"], p, "Stride")
    pad = _ints(m["Padding"], p, "Padding")
    want_stride = [1] + [s for b in a.blocks() for s in (b.stride, 1)] + [1]  # conv0, the blocks, conv_last
    want_pad = [s.shape[2] // 2 for s in signs]
    want_scale = np.array([math.sqrt(2.0 / math.prod(s.shape[1:])) for s in signs], np.float32)
    problems = []
    if scales.shape != want_scale.shape or not np.allclose(scales, want_scale, rtol=1e-6, atol=0):
        problems.append(
            f"LayerWeights {scales[:3].tolist()}... (expected sqrt(2 / fan_in): {want_scale[:3].tolist()}...)"
        )
    if stride != want_stride:
        problems.append(f"Stride {stride} (expected {want_stride})")
    if pad != want_pad:
        problems.append(f"Padding {pad} (expected {want_pad})")
    channels = _ints(m["NumChannels"], p, "NumChannels")
    if channels and channels[-1] != a.num_classes:
        problems.append(f"NumChannels ends with {channels[-1]} but the head conv has {a.num_classes} outputs")
    if problems:
        raise InputError(f"{p}: the MATLAB layout states what binexport can't run: " + "; ".join(problems))
