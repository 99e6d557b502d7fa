"""The pieces every binexport ONNX graph is built from: one home for each, shared by the float, 1-bit, int8 and
design graphs.

:class:`Graph` collects nodes and initializers; :func:`bn`, :func:`downsample`, :func:`normalize` and
:func:`to_nchw` are the float parts of the SPEC's network in the model's variant (eps, padding, pool divisor,
input statistics); :func:`sign_table`, :func:`unpack_signs` and :func:`pack_lut8` turn sign bits stored at one
bit per weight back into weights when the session starts. Keeping them here, below ``formats/onnx/__init__.py``
and ``int8.py``, means every graph computes its float parts the same way and no module hands another its helpers.

The sign-bit expansion: the flattened (out, in, kh, kw) signs are ``np.packbits``-ed into a uint8 initializer,
``Cast`` to int32 and ``Gather``-ed from a shared (256, 8) table whose row i holds i's bits (most significant
first) as the weight's two values; where the last byte is zero-padded, ``Reshape(-1)`` and ``Slice`` drop the
padding; ``Reshape`` gives the weight its shape. ONNX Runtime constant-folds the chain at session start.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from binexport.model import Arch, BinaryWeight, Model, input_normalization

#: ONNX TensorProto element types used in ``Cast`` nodes (kept numeric so this module imports without onnx).
FLOAT, INT32, FLOAT16 = 1, 6, 10


class Graph:
    """Nodes and initializers with unique names; constants of the same bytes are stored once (``share``)."""

    def __init__(self, dtype: Any) -> None:
        self.dtype = dtype
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._shared: dict[tuple[str, bytes], str] = {}
        self._count = 0

    def const(self, name: str, arr: np.ndarray, share: bool = False) -> str:
        """Add ``arr`` as initializer ``name`` (or, with ``share``, reuse an earlier one of the same bytes)."""
        from onnx import numpy_helper

        arr = np.ascontiguousarray(arr)
        key = (f"{arr.dtype}{arr.shape}", arr.tobytes()) if share else None
        if key is not None and key in self._shared:
            return self._shared[key]
        self.initializers.append(numpy_helper.from_array(arr, name))
        if key is not None:
            self._shared[key] = name
        return name

    def node(self, op: str, inputs: list[str], out: str | None = None, **attrs: Any) -> str:
        """Add one ``op`` node; returns its output's name (``out``, or one made from the op and a counter)."""
        from onnx import helper

        self._count += 1
        out = out or f"{op.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{op}_{self._count}", **attrs))
        return out


#: A packer adds the nodes that produce one binarised weight (as +-scale, dtype) and returns its name.
Packer = Callable[[Graph, str, BinaryWeight, Any], str]


def onnx_pads(arch: Arch, kernel: int, stride: int) -> list[int]:
    """ONNX ``pads`` ([top, left, bottom, right]) of a window in ``arch``'s variant (TF 'same' is asymmetric)."""
    return list(arch.pads(kernel, stride))


def bn(g: Graph, model: Model, x: str, name: str, relu: bool) -> str:
    """Inference BatchNorm (the variant's eps): scale 1, bias 0 where the BN has no affine part."""
    mean = model.floats[name + ".running_mean"].astype(g.dtype)
    c = mean.shape[0]
    if name + ".weight" in model.floats:
        scale = g.const(name + ".weight", model.floats[name + ".weight"].astype(g.dtype))
        bias = g.const(name + ".bias", model.floats[name + ".bias"].astype(g.dtype))
    else:
        scale = g.const(f"ones_{c}", np.ones(c, g.dtype), share=True)
        bias = g.const(f"zeros_{c}", np.zeros(c, g.dtype), share=True)
    y = g.node(
        "BatchNormalization",
        [
            x,
            scale,
            bias,
            g.const(name + ".running_mean", mean),
            g.const(name + ".running_var", model.floats[name + ".running_var"].astype(g.dtype)),
        ],
        epsilon=float(model.arch.bn_eps),
    )
    return g.node("Relu", [y]) if relu else y


def downsample(g: Graph, h: str, arch: Arch) -> str:
    """avg_pool2d(3, 2) padded and averaged as the variant says, then zero channels: the residual path of cat([d, 0]) + t.

    The zeros are Concat(d, Mul(d, 0)) rather than a Pad: every converter measured has Concat and Mul, and
    onnx2torch has no opset-18 Pad (docs/BENCHMARKS.md). Widths double, so there are as many zeros as d.
    """
    d = g.node(
        "AveragePool",
        [h],
        kernel_shape=[3, 3],
        strides=[2, 2],
        pads=onnx_pads(arch, 3, 2),
        count_include_pad=int(arch.pool_count_include_pad),
    )
    return g.node("Concat", [d, zeros_like(g, d)], axis=1)


def zeros_like(g: Graph, x: str) -> str:
    """Zeros of x's shape as ``Mul(x, 0)``, not ``Pad``: Pad's pads became an input in opset 11 and gained
    ``axes`` in opset 18, which onnx2torch and other converters don't handle, while Mul and Concat convert
    everywhere. x averages finite activations, so x * 0 is exactly +-0 and t + (-0) == t: logits are unchanged."""
    return g.node("Mul", [x, g.const("zero", np.zeros((), g.dtype), share=True)])


def normalize(g: Graph, x: str, arch: Arch) -> str:
    """uint8 NHWC pixels -> normalised NCHW (the arch's mean/std), in the same float32 steps as ``data.normalize``."""
    mean, std = input_normalization(arch)
    whose = arch.normalization or "cifar"  # the initializers say whose statistics they hold
    h = g.node("Cast", [x], to=FLOAT)
    h = g.node("Div", [h, g.const("pixel_max", np.array(255.0, np.float32))])
    h = g.node("Sub", [h, g.const(f"{whose}_mean", np.asarray(mean, np.float32).reshape(1, 1, 1, 3))])
    h = g.node("Div", [h, g.const(f"{whose}_std", np.asarray(std, np.float32).reshape(1, 1, 1, 3))])
    h = g.node("Transpose", [h], perm=[0, 3, 1, 2])
    if g.dtype == np.float16:
        h = g.node("Cast", [h], to=FLOAT16)
    return h


def to_nchw(g: Graph, x: str) -> str:
    """uint8 NHWC pixels -> float NCHW pixels (0..255) for a model whose input BN normalises."""
    h = g.node("Transpose", [g.node("Cast", [x], to=FLOAT)], perm=[0, 3, 1, 2])
    return g.node("Cast", [h], to=FLOAT16) if g.dtype == np.float16 else h


def sign_table(bits: int, one: Any, zero: Any, dtype: Any) -> np.ndarray:
    """(2**bits, bits) of ``dtype``: row i holds i's bits, most significant first (np.packbits order), each bit
    as ``one`` (1) or ``zero`` (0).

    The one table of every sign expansion: ``(8, s, -s, float32)`` for a 1-bit weight of scale s,
    ``(8, zp + 1, zp - 1, int8)`` for int8 codes around a weight zero point, 9 bits for a 3x3 kernel's table.

    Example:
        >>> sign_table(2, 1.0, -1.0, np.float32).tolist()
        [[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]]
    """
    codes = (np.arange(2**bits)[:, None] >> np.arange(bits - 1, -1, -1)[None, :]) & 1
    return np.where(codes.astype(bool), np.asarray(one, dtype), np.asarray(zero, dtype)).astype(dtype)


def scale_table(bits: int, scale: float, dtype: Any) -> np.ndarray:
    """:func:`sign_table` of +-``scale`` (``-scale`` negated in ``dtype``, so both halves round alike)."""
    s = np.asarray(scale, dtype=dtype)
    return sign_table(bits, s, -s, dtype)


def unpack_signs(
    g: Graph,
    table: str,
    bits_name: str,
    signs: np.ndarray,
    out: str | None = None,
    flat: bool = False,
    zeros: np.ndarray | None = None,
    zero_fill: np.generic | None = None,
) -> str:
    """The sign-bit expansion: ``signs`` (bool, any shape) stored as uint8 ``bits_name`` at one bit per sign,
    then Cast -> Gather(``table``, a (256, 8) :func:`sign_table` initializer) -> :func:`reshape_bits`.

    ``zeros`` (flat indices, ``BinaryWeight.zeros``) are the exact-zero latent weights: the training forward
    multiplies sign(0) = 0 by the scale where the sign bits say +1, so :func:`scatter_zeros` sets them to
    ``zero_fill`` (what means 0 in the table's dtype: 0, or an int8 weight's zero point; FORMAT.md 4.2).

    Returns the name of the expanded tensor (``out`` where given), of ``signs``' shape and the table's dtype.
    """
    packed = np.packbits(signs.reshape(-1))
    idx = g.node("Cast", [g.const(bits_name, packed)], to=INT32)  # Gather takes int32/int64 indices
    w = g.node("Gather", [table, idx])
    if zeros is not None and zeros.size:
        w = scatter_zeros(g, bits_name, trim_bits(g, w, signs.size), zeros, zero_fill)
        return reshape_bits(g, w, signs.size, tuple(signs.shape), out)
    return reshape_bits(g, w, signs.size, tuple(signs.shape), out, flat)


def trim_bits(g: Graph, w: str, n: int) -> str:
    """Unpacked bytes (8 values each) -> flat, with the last byte's zero padding sliced off where ``n`` is not
    a multiple of 8."""
    w = g.node("Reshape", [w, g.const("shape_flat", np.array([-1], np.int64), share=True)])
    if n % 8:
        w = g.node(
            "Slice",
            [
                w,
                g.const("zero_1d", np.array([0], np.int64), share=True),
                g.const(f"size_{n}", np.array([n], np.int64), share=True),
            ],
        )
    return w


def scatter_zeros(g: Graph, name: str, flat: str, zeros: np.ndarray, fill: np.generic | None) -> str:
    """``flat`` with the positions ``zeros`` set to ``fill`` (ScatterND; constant, so runtimes fold it at
    session start like the Gather before it)."""
    value = np.asarray(0 if fill is None else fill)
    idx = g.const(name + ".zero_positions", zeros.astype(np.int64).reshape(-1, 1))
    fills = np.full(zeros.size, value, value.dtype)
    fill_name = g.const(f"zero_fill_{fills.dtype}_{value.item()}_{fills.size}", fills, share=True)
    return g.node("ScatterND", [flat, idx, fill_name])


def reshape_bits(g: Graph, w: str, n: int, shape: tuple[int, ...], out: str | None = None, flat: bool = False) -> str:
    """Unpacked bytes (8 values each) -> ``shape``: :func:`trim_bits` where ``n`` is not a multiple of 8 (or
    ``flat`` asks for the 1-D step anyway), then Reshape."""
    if flat or n % 8:
        w = trim_bits(g, w, n)
    shape_name = f"shape_{'x'.join(map(str, shape))}"
    return g.node("Reshape", [w, g.const(shape_name, np.array(shape, np.int64), share=True)], out=out)


def pack_lut8(g: Graph, name: str, bw: BinaryWeight, dtype: Any) -> str:
    """The shipped 1-bit design: uint8 packbits of the flattened signs -> :func:`unpack_signs` through a shared
    (256, 8) table of +-scale; the weight is named ``<name>.weight``."""
    table = g.const(f"sign_table_{bw.scale!r}", scale_table(8, bw.scale, dtype), share=True)
    fill = np.dtype(dtype).type(0)
    return unpack_signs(g, table, name, bw.signs, out=name + ".weight", zeros=bw.zeros, zero_fill=fill)
