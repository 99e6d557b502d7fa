"""Alternative 1-bit weight subgraphs, kept to measure binexport's choice against them (benchmarks/bench_onnx.py).

Each packer has the signature of :func:`binexport.formats.onnx.graph.pack_lut8` and is
passed to ``build_model(..., _packer=...)``; the library itself ships only the
winner (the 256-entry byte table).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from binexport.formats.onnx.graph import Graph, pack_lut8, reshape_bits, scale_table, sign_table, unpack_signs
from binexport.model import BinaryWeight


def pack_bitshift(g: Graph, name: str, bw: BinaryWeight, dtype: Any) -> str:
    """uint8 bytes -> BitShift by 7..0 -> BitwiseAnd 1 -> Cast -> Mul 2*scale -> Sub scale -> Reshape."""
    packed = np.packbits(bw.signs.reshape(-1)).reshape(-1, 1)
    shifts = g.const("shifts_7_0", np.arange(7, -1, -1, dtype=np.uint8), share=True)
    bits = g.node("BitShift", [g.const(name, packed), shifts], direction="RIGHT")
    bits = g.node("BitwiseAnd", [bits, g.const("one_u8", np.array(1, np.uint8), share=True)])
    w = g.node("Cast", [bits], to=10 if dtype == np.float16 else 1)
    s = np.asarray(bw.scale, dtype)
    w = g.node("Mul", [w, g.const(f"twice_{bw.scale!r}", np.asarray(2 * s, dtype), share=True)])
    w = g.node("Sub", [w, g.const(f"scale_{bw.scale!r}", s, share=True)])
    return reshape_bits(g, w, bw.signs.size, tuple(bw.shape), out=name + ".weight", flat=True)


def pack_lut512(g: Graph, name: str, bw: BinaryWeight, dtype: Any) -> str:
    """Each 3x3 kernel's 9 bits index a (512, 3, 3) table through one Gather, output already (out, in, 3, 3).

    The 9-bit index is stored as its low byte (uint8, (out, in)) plus the high bit packed 8 to a byte,
    so the file stays at one bit per weight; rebuilding the index touches only index-sized tensors.
    """
    out_c, in_c = bw.shape[:2]
    bits = bw.signs.reshape(out_c * in_c, 9).astype(np.int32)
    idx = bits @ (1 << np.arange(8, -1, -1, dtype=np.int32))
    low = (idx & 255).astype(np.uint8).reshape(out_c, in_c)
    hi_table = g.const("high_bit_table", sign_table(8, 256, 0, np.int32), share=True)
    high = (idx >> 8).astype(bool).reshape(out_c, in_c)
    hb = unpack_signs(g, hi_table, name + ".high", high, flat=True)
    idx_node = g.node("Add", [g.node("Cast", [g.const(name + ".low", low)], to=6), hb])
    table = g.const(f"kernel_table_{bw.scale!r}", scale_table(9, bw.scale, dtype).reshape(512, 3, 3), share=True)
    return g.node("Gather", [table, idx_node], out=name + ".weight")


DESIGNS = {"lut8": pack_lut8, "lut512": pack_lut512, "bitshift": pack_bitshift}
