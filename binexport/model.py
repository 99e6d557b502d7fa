"""The one in-memory model every reader produces and every writer takes.

It holds numpy arrays only, so formats that don't need torch (``.bwn``,
``.mat``, safetensors, ONNX) never import torch. Names are canonical: the state_dict keys of
``WRN_McDonnell`` without the ``module.`` prefix of ``DataParallel``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from binexport.arch import FAMILY_LABELS, INPUT_NORMALIZATION, VARIANTS, Arch, TensorSpec  # noqa: F401 (re-exported)
from binexport.errors import CheckError, InputError

#: CIFAR normalisation of the SPEC, per RGB channel, on the 0..1 scale.
CIFAR_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
CIFAR_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)


def input_normalization(arch: Arch) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (mean, std) per RGB channel, 0..1 scale, that ``arch``'s normalised input was made with.

    The SPEC's CIFAR statistics, except for a family that evaluates with its own (pytorchcv:
    :data:`binexport.arch.INPUT_NORMALIZATION`). A model with an input BN takes raw pixels instead.
    """
    return INPUT_NORMALIZATION.get(arch.family, (CIFAR_MEAN, CIFAR_STD))


#: How a full-precision model's conv weights can be stored (binexport/precision.py rounds to the half ones).
WEIGHTS_DTYPES = ("float32", "float16", "bfloat16")


def binary_scale(shape: tuple[int, ...]) -> float:
    """The He-init scale the training code multiplies sign(w) by: sqrt(2 / fan_in)."""
    fan_in = shape[1] * shape[2] * shape[3]
    if fan_in < 1:
        raise InputError(f"a binarised conv of shape {tuple(shape)} has no inputs, so no scale")
    return math.sqrt(2.0 / fan_in)


_NO_ZEROS = np.zeros(0, np.int64)


@dataclass
class BinaryWeight:
    """A binarised conv weight: one sign per weight, True = +1, scale from the shape.

    ``zeros``: the flat (C-order) indices of latent weights that were exactly 0, sorted. The training code's
    forward multiplies sign(0) = 0 by the scale, so those weights are 0, not +scale; their sign bit is 1
    (+1), the one value a bit can hold that the old files agree on. Empty where none were, or where the
    file could not say (a ``.bwn`` without ``zero_positions``, the published packed layout).
    """

    signs: np.ndarray  # bool, (out, in, kh, kw)
    zeros: np.ndarray = field(default_factory=lambda: _NO_ZEROS)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.signs.shape)

    @property
    def scale(self) -> float:
        return binary_scale(self.shape)

    def to_float(self, dtype: type = np.float32) -> np.ndarray:
        """The weight the forward pass uses: +-scale, and 0 at the exact-zero positions."""
        s: np.ndarray = np.asarray(self.scale, dtype=dtype)
        out: np.ndarray = np.where(self.signs, s, -s).astype(dtype, copy=False)
        if self.zeros.size:
            out.reshape(-1)[self.zeros] = 0
        return out


class Source:
    """Where a model came from (file format, layout, path, size), and what the bytes of that file were spent on.

    The sha256 is computed on first use: hashing a 205 MB training checkpoint
    costs more than packing it, and only some outputs record it.
    """

    def __init__(
        self,
        format: str,
        path: str = "",
        size: int = 0,
        sha256: str = "",
        breakdown: dict[str, int] | None = None,
        layout: str = "",
    ) -> None:
        self.format = format  # a file format of the registry: checkpoint, packed, bwn (or "memory")
        self.layout = layout or format  # what the reader found inside, e.g. "training-checkpoint", "state-dict"
        self.path = path
        self.size = size
        self._sha256 = sha256
        self.breakdown = dict(breakdown or {})

    @property
    def sha256(self) -> str:
        if not self._sha256 and self.path:
            from binexport.fileio import sha256_file

            self._sha256 = sha256_file(self.path)
        return self._sha256

    def __repr__(self) -> str:
        return f"Source({self.format!r}, {self.path!r}, size={self.size}, layout={self.layout!r})"


@dataclass
class Model:
    """Architecture, float tensors, and (if binarised) sign bits of the block convs."""

    arch: Arch
    binarized: bool
    floats: dict[str, np.ndarray]
    binary: dict[str, BinaryWeight] = field(default_factory=dict)
    zero_weights: int = 0
    source: Source = field(default_factory=lambda: Source("memory"))
    metadata: dict[str, str] = field(default_factory=dict)
    #: How a full-precision model's conv weights were stored: ``float32`` (exact), or ``float16`` /
    #: ``bfloat16`` when a file kept them in half precision (lossy; the arrays here are float32 either way).
    weights_dtype: str = "float32"

    def __post_init__(self) -> None:
        problems = self.arch.mismatches(
            {**{k: v.shape for k, v in self.floats.items()}, **{k: v.shape for k, v in self.binary.items()}}
        )
        kinds = self.arch.kinds
        if self.binarized:
            problems += [
                f"{k} should be binarised" for k, kind in kinds.items() if kind == "binary" and k in self.floats
            ]
        elif self.binary:
            problems.append("a full-precision model can't hold sign bits")
        if self.weights_dtype not in WEIGHTS_DTYPES:
            problems.append(f"weights_dtype {self.weights_dtype!r} is not float32, float16 or bfloat16")
        elif self.binarized and self.weights_dtype != "float32":
            problems.append("a binarised model's float tensors are float32")
        if problems:
            raise InputError(f"inconsistent {self.arch.name} model: " + "; ".join(problems[:8]))

    def dense(self, name: str, dtype: type = np.float32) -> np.ndarray:
        """The tensor the forward pass uses: +-scale for binarised weights."""
        if name in self.binary:
            return self.binary[name].to_float(dtype)
        return self.floats[name]

    def param_counts(self) -> tuple[int, int]:
        """(binarised weights, float parameters), BN running statistics excluded."""
        nb = sum(int(b.signs.size) for b in self.binary.values())
        kinds = self.arch.kinds
        nf = sum(int(v.size) for k, v in self.floats.items() if kinds[k] != "bn")
        return nb, nf

    def float32_weight_bytes(self) -> int:
        """Size of every tensor as float32 (int64 counters as int64): the fair 'before' of a size ratio."""
        return sum(
            int(np.prod(s.shape)) * (8 if s.name.endswith("num_batches_tracked") else 4) for s in self.arch.specs()
        )

    @property
    def weights(self) -> str:
        """The weight encoding of this model: ``1-bit`` when binarised, else how its weights were stored
        (``float32``, or ``float16``/``bfloat16`` for a file that kept them in half precision)."""
        return "1-bit" if self.binarized else self.weights_dtype

    def compare(self, other: Model) -> list[str]:
        """Every difference that matters: sign bits, float bytes, dtypes, architecture."""
        if self.arch != other.arch:
            return [f"architecture {other.arch.name} {other.arch.widths} != {self.arch.name} {self.arch.widths}"]
        problems = []
        if self.weights_dtype != other.weights_dtype:
            problems.append(f"weights stored as {other.weights_dtype}, expected {self.weights_dtype}")
        if self.binarized != other.binarized:
            problems.append(f"binarised {other.binarized} != {self.binarized}")
        for name, b in self.binary.items():
            o = other.binary.get(name)
            if o is None or o.shape != b.shape:
                problems.append(f"{name}: sign bits missing or reshaped")
            elif not np.array_equal(o.signs, b.signs):
                problems.append(f"{name}: {int(np.count_nonzero(o.signs != b.signs))} sign bits differ")
            elif o.zeros.size and not np.array_equal(o.zeros, b.zeros):  # a format that can't hold them: none
                problems.append(f"{name}: exact-zero positions differ ({o.zeros.size} vs {b.zeros.size})")
        for name, a in self.floats.items():
            f = other.floats.get(name)
            if f is None:
                problems.append(f"{name}: missing")
            elif f.dtype != a.dtype or f.shape != a.shape or f.tobytes() != a.tobytes():
                problems.append(f"{name}: bytes differ ({f.dtype}{f.shape} vs {a.dtype}{a.shape})")
        return problems

    def check_equal(self, other: Model, what: str) -> None:
        """Raise one CheckError listing every difference between two models."""
        problems = self.compare(other)
        if problems:
            raise CheckError(f"{what} does not hold the same model", problems)


def binarize(model: Model) -> Model:
    """Sign bits of a full-precision model's block convs, as the training code's forward uses them.

    An exact zero has sign 0 at training time; one bit can't hold it, so it
    becomes +1 (bit 1), is counted in ``zero_weights`` and its position kept in
    ``BinaryWeight.zeros`` (so the forward, and a ``.bwn``, still give it 0).
    """
    if model.binarized:
        return model
    kinds = model.arch.kinds
    floats, binary, zeros = {}, {}, 0
    for name, arr in model.floats.items():
        if kinds[name] == "binary":
            where = np.flatnonzero(np.asarray(arr) == 0).astype(np.int64)
            binary[name] = BinaryWeight(np.asarray(arr) >= 0, where)
            zeros += int(where.size)
        else:
            floats[name] = arr
    return Model(model.arch, True, floats, binary, zeros, model.source, dict(model.metadata))
