"""Alternative 1-bit weight subgraphs, kept to measure binexport's choice against them (benchmarks/bench_onnx.py).

Each packer has the signature of ``binexport.formats.onnx.pack_lut8`` and is
passed to ``build_model(..., _packer=...)``; the library itself ships only the
winner (the 256-entry byte table).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from binexport.formats.onnx import pack_lut8, sign_table  # noqa: F401 (the shipped design, for comparison)
from binexport.model import BinaryWeight


def pack_bitshift(g: Any, name: str, bw: BinaryWeight, dtype: Any) -> str:
    """uint8 bytes -> BitShift by 7..0 -> BitwiseAnd 1 -> Cast -> Mul 2*scale -> Sub scale -> Reshape."""
    n = bw.signs.size
    packed = np.packbits(bw.signs.reshape(-1)).reshape(-1, 1)
    shifts = g.const("shifts_7_0", np.arange(7, -1, -1, dtype=np.uint8), share=True)
    bits = g.node("BitShift", [g.const(name, packed), shifts], direction="RIGHT")
    bits = g.node("BitwiseAnd", [bits, g.const("one_u8", np.array(1, np.uint8), share=True)])
    w = g.node("Cast", [bits], to=10 if dtype == np.float16 else 1)
    s = np.asarray(bw.scale, dtype)
    w = g.node("Mul", [w, g.const(f"twice_{bw.scale!r}", np.asarray(2 * s, dtype), share=True)])
    w = g.node("Sub", [w, g.const(f"scale_{bw.scale!r}", s, share=True)])
    flat = g.node("Reshape", [w, g.const("shape_flat", np.array([-1], np.int64), share=True)])
    if packed.size * 8 != n:
        flat = g.node(
            "Slice",
            [
                flat,
                g.const("zero_1d", np.array([0], np.int64), share=True),
                g.const(f"size_{n}", np.array([n], np.int64), share=True),
            ],
        )
    return g.node(
        "Reshape",
        [flat, g.const(f"shape_{'x'.join(map(str, bw.shape))}", np.array(bw.shape, np.int64), share=True)],
        out=name + ".weight",
    )


def pack_lut512(g: Any, name: str, bw: BinaryWeight, dtype: Any) -> str:
    """Each 3x3 kernel's 9 bits index a (512, 3, 3) table through one Gather, output already (out, in, 3, 3).

    The 9-bit index is stored as its low byte (uint8, (out, in)) plus the high bit packed 8 to a byte,
    so the file stays at one bit per weight; rebuilding the index touches only index-sized tensors.
    """
    out_c, in_c = bw.shape[:2]
    bits = bw.signs.reshape(out_c * in_c, 9).astype(np.int32)
    idx = bits @ (1 << np.arange(8, -1, -1, dtype=np.int32))
    low = (idx & 255).astype(np.uint8).reshape(out_c, in_c)
    high = np.packbits((idx >> 8).astype(bool))
    hi_table = g.const("high_bit_table", (sign_table(8, 1.0, np.float32) > 0).astype(np.int32) * 256, share=True)
    hb = g.node("Gather", [hi_table, g.node("Cast", [g.const(name + ".high", high)], to=6)])
    hb = g.node("Reshape", [hb, g.const("shape_flat", np.array([-1], np.int64), share=True)])
    if high.size * 8 != out_c * in_c:
        hb = g.node(
            "Slice",
            [
                hb,
                g.const("zero_1d", np.array([0], np.int64), share=True),
                g.const(f"size_{out_c * in_c}", np.array([out_c * in_c], np.int64), share=True),
            ],
        )
    hb = g.node("Reshape", [hb, g.const(f"shape_{out_c}x{in_c}", np.array([out_c, in_c], np.int64), share=True)])
    idx_node = g.node("Add", [g.node("Cast", [g.const(name + ".low", low)], to=6), hb])
    table = g.const(f"kernel_table_{bw.scale!r}", sign_table(9, bw.scale, dtype).reshape(512, 3, 3), share=True)
    return g.node("Gather", [table, idx_node], out=name + ".weight")


DESIGNS = {"lut8": pack_lut8, "lut512": pack_lut512, "bitshift": pack_bitshift}
