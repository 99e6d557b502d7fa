"""Half-precision storage of a full-precision model's conv weights (``.bwn --weights float16|bfloat16``).

numpy only, like the model. Rounding is round-to-nearest-even in both cases, so
every weight is within half a unit in the last place of its half-precision
neighbour; the ``.bwn`` writer stores the rounded bits and its reader gives
float32 back, which is why :func:`round_weights` exists: it is the model such a
file reads back as, and ``pack`` proves the written file against it bit for bit.
"""

from __future__ import annotations

import numpy as np

from binexport.errors import InputError
from binexport.model import Model

#: Half-precision storage of a full-precision model's conv weights (``.bwn --weights``).
HALF_WEIGHTS = ("float16", "bfloat16")
#: Tensor kinds that go half under ``--weights float16|bfloat16``: the convs. BN statistics and bn_last's affine
#: stay float32: they are 0.4 % of the bytes, and a running variance rounded to 3 significant digits moves
#: every activation of its channel.
HALF_KINDS = ("conv", "binary")


def to_bfloat16_bits(a: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16): round to nearest, ties to even, overflow to inf, as torch does.

    A NaN stays NaN with its sign and top payload bits and the quiet bit set (plain rounding or truncation
    could turn a NaN whose payload sits in the low bits into infinity).
    """
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounded = ((u.astype(np.uint64) + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, ((u >> 16) | 0x0040).astype(np.uint16), rounded)


def from_bfloat16_bits(b: np.ndarray) -> np.ndarray:
    """bfloat16 bits (uint16) -> float32, exact."""
    return (np.asarray(b, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def round_weights(model: Model, weights: str) -> Model:
    """The model as half-precision storage of its conv weights gives it back: float32 arrays, rounded.

    This is what a ``.bwn`` written with ``weights=`` reads back as, so ``pack`` can prove the file bit for bit.

    Raises:
        InputError: ``weights`` is not float32/float16/bfloat16, or half precision for a binarised model.
    """
    if weights == model.weights_dtype:
        return model
    if weights not in HALF_WEIGHTS:
        if weights != "float32":
            raise InputError(f"unknown weights {weights!r}; valid: float32, {', '.join(HALF_WEIGHTS)}")
        return Model(
            model.arch,
            model.binarized,
            dict(model.floats),
            dict(model.binary),
            model.zero_weights,
            model.source,
            dict(model.metadata),
        )  # half values are exact in float32: nothing to round
    if model.binarized:
        raise InputError(
            f"--weights {weights} is for full-precision models; a 1-bit model's float tensors "
            "(conv0, conv_last, BN) stay float32"
        )
    kinds = model.arch.kinds
    floats = {}
    for name, arr in model.floats.items():
        if kinds[name] in HALF_KINDS:
            a32 = np.asarray(arr, dtype=np.float32)
            with np.errstate(over="ignore"):  # beyond 65504 is infinity in float16: the rounding, not an error
                floats[name] = (
                    a32.astype(np.float16).astype(np.float32)
                    if weights == "float16"
                    else from_bfloat16_bits(to_bfloat16_bits(a32))
                ).reshape(a32.shape)
        else:
            floats[name] = arr
    return Model(model.arch, False, floats, {}, model.zero_weights, model.source, dict(model.metadata), weights)
