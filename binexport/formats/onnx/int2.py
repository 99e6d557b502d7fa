"""The int2 body of the ONNX graph: every 1-bit conv weight stays packed in memory, not only on disk.

A binarised weight is exactly ``scale * (±1)``, so it is stored as an ONNX
INT2 tensor (opset 25; codes -1 and +1, four to a byte) and turned into float
by ``DequantizeLinear`` (per-output-channel scale) right before its ``Conv``;
activations stay float32, so the logits are the float graph's (the ``1-bit``
tolerance holds). ONNX Runtime does not constant-fold DequantizeLinear, so the
session keeps the 2-bit codes: WRN-20-10 holds 7.9 MiB of weights where
the 1-bit graph, whose Gather unpack *is* folded, holds 104 MiB.

Left alone, ONNX Runtime runs every weight-only DequantizeLinear first (none
of them depends on the image), and every float weight is alive at once. So
each DequantizeLinear is made to wait for its conv's input: its scale is
``scale + 0 * ReduceMin(conv input)``, exactly ``scale`` for finite
activations, and the float weight exists only while its conv runs.

The cost is speed: the Conv weight is no longer a constant, so ONNX Runtime
neither prepacks it nor moves that conv to its NCHWc layout. This is a memory
mode (docs/runtimes.md, "Which file for memory"), not a speed mode; ``session.disable_quant_qdq`` must
stay off (it would fold the weights back to float).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from binexport.errors import InputError
from binexport.formats.onnx.graph import Graph, bn, downsample, onnx_pads
from binexport.model import BinaryWeight, Model

#: ONNX's INT2 element type (``onnx.TensorProto.INT2``): signed 2-bit, four to a byte, first element lowest bits.
INT2 = 26
#: The first opset whose DequantizeLinear takes INT2.
MIN_OPSET = 25
#: The 2-bit two's-complement codes of a -1 and a +1 sign.
CODE_MINUS, CODE_PLUS = 0b11, 0b01


def check(model: Model, opset: int) -> None:
    """Refuse what int2 can't encode exactly: a full-precision model, or an opset before INT2 existed.

    Raises:
        InputError: the model is not binarised, or ``opset`` < :data:`MIN_OPSET`.
    """
    if not model.binarized:
        raise InputError(
            f"{model.arch.name} is a full-precision model: int2 stores each block conv weight as a sign "
            "(codes -1, +1) times a scale, which would change its outputs; use --weights float32 or int8"
        )
    if opset < MIN_OPSET:
        raise InputError(
            f"--weights int2 needs opset {MIN_OPSET} or newer (ONNX's INT2 type), got {opset}; pass --opset {MIN_OPSET}"
        )


def pack_codes(signs: np.ndarray, zeros: np.ndarray | None = None) -> bytes:
    """INT2 ``raw_data`` of a sign array (True = +1): codes -1/+1, four to a byte, the first in the lowest bits.

    ``zeros``: flat indices of exact-zero weights (``BinaryWeight.zeros`` where the model records them): code 0
    there, which INT2 holds natively, so the training forward's sign(0) = 0 stays exact without extra ops.
    """
    codes = np.where(np.asarray(signs, bool).reshape(-1), CODE_PLUS, CODE_MINUS).astype(np.uint8)
    if zeros is not None and np.size(zeros):
        codes[np.asarray(zeros, np.int64)] = 0
    codes = np.concatenate([codes, np.zeros(-len(codes) % 4, np.uint8)]).reshape(-1, 4)
    return (codes[:, 0] | codes[:, 1] << 2 | codes[:, 2] << 4 | codes[:, 3] << 6).astype(np.uint8).tobytes()


def unpack_codes(raw: bytes, n: int) -> np.ndarray:
    """The ``n`` int8 values (-2..1) of INT2 ``raw_data``: the inverse of :func:`pack_codes`, for tests and readers."""
    b = np.frombuffer(raw, np.uint8)
    codes = np.stack([(b >> s) & 3 for s in (0, 2, 4, 6)], axis=1).reshape(-1)[:n].astype(np.int8)
    return np.where(codes >= 2, codes - 4, codes).astype(np.int8)


def int2_tensor(name: str, bw: BinaryWeight) -> Any:
    """The TensorProto of a binarised weight as INT2 codes (its shape, no float copy)."""
    from onnx import TensorProto

    t = TensorProto()
    t.name = name
    t.data_type = INT2
    t.dims.extend(bw.shape)
    t.raw_data = pack_codes(bw.signs, getattr(bw, "zeros", None))  # exact zeros, where the model records them
    return t


def weight(g: Graph, name: str, bw: BinaryWeight, conv_input: str) -> str:
    """Add ``DequantizeLinear(INT2 codes, scale + 0 * ReduceMin(conv_input))``; returns the float weight's name.

    ``g`` is the float graph's builder (``const``, ``node``, ``initializers``); the scale is one float32 per output
    channel (axis 0), every one the layer's ``bw.scale``, so the float weight is exactly ``±scale``.
    """
    g.initializers.append(int2_tensor(name + ".int2", bw))
    out = bw.shape[0]
    scale = g.const(name + ".scale", np.full(out, bw.scale, g.dtype))
    low = g.node("ReduceMin", [conv_input], keepdims=0)  # every axis: a scalar that exists once the input does
    wait = g.node("Mul", [low, g.const("zero", np.zeros((), g.dtype), share=True)])
    return g.node("DequantizeLinear", [name + ".int2", g.node("Add", [scale, wait])], axis=0, out=name + ".weight")


def body(g: Graph, model: Model, h: str) -> str:
    """Add the residual blocks after conv0's output ``h``, each block conv's weight INT2; returns the last Add.

    The float parts (BatchNorm, the downsampled shortcut) are :mod:`graph`'s, as in the ``1-bit`` graph (the
    variant's eps, padding, pool divisor).
    """
    arch = model.arch

    def conv_weight(name: str, conv_input: str) -> str:
        if name in model.binary:
            return weight(g, name, model.binary[name], conv_input)
        return str(g.const(name, model.dense(name).astype(g.dtype)))  # a float block conv (none in a 1-bit WRN)

    for blk in arch.blocks():
        p = blk.prefix
        a = bn(g, model, h, p + "bn0", relu=True)
        t = g.node(
            "Conv",
            [a, conv_weight(p + "conv0", a)],
            pads=onnx_pads(arch, 3, blk.stride),
            strides=[blk.stride, blk.stride],
        )
        a = bn(g, model, t, p + "bn1", relu=True)
        t = g.node("Conv", [a, conv_weight(p + "conv1", a)], pads=[1, 1, 1, 1])
        if blk.shortcut:
            h = downsample(g, h, arch)
        h = g.node("Add", [h, t])
    return h
