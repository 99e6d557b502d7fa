"""The int8 body of the ONNX graph: QDQ around every block conv, so ONNX Runtime runs QLinearConv.

Why this works exactly for a 1-bit network: a binarised weight is ``±scale``
with one scale per layer, so it is *exactly* ``scale * (±1)``: int8 ±1 with a
per-output-channel DequantizeLinear scale; or, by default, int8 {0, 2} with
weight zero point 1, which is the same ±scale and sends ONNX Runtime to a
different kernel (:data:`WEIGHT_ZERO_POINTS`). The file stores the sign bits
(``np.packbits``), expanded at session start by :func:`graph.unpack_signs`
(Cast → Gather from a 256 x 8 int8 :func:`graph.sign_table` → Reshape); ONNX Runtime constant-folds that chain and stops at the
DequantizeLinear, so its QDQ fusion still sees ``DQ(int8 initializer)`` and
the file stays at the 1-bit size. Only activations are quantized (static,
from calibration ranges).

Per block (names as :data:`binexport.runtimes.torch_ref.Tap`):

- ``a = relu(bn0(h))``: a float BatchNormalization, then QuantizeLinear to
  uint8 with zero point 0, whose clamp *is* the ReLU;
- ``conv0`` with ``bn1`` folded in (weight scale ``scale * k1_c``, int32 bias
  ``-mean1_c * k1_c`` on the grid ``s_a * w_c``), quantized straight to uint8
  (the clamp is bn1's ReLU): without this fold only half the convs fuse;
- ``conv1``, its output ``t`` quantized int8-symmetric and dequantized; the
  residual Add and the downsampling path stay float (cheap, and exact).

conv0 and conv_last stay float (quantizing them gained no speed and doubled
the logit error); where they are 1-bit (McDonnell's models) the file keeps
their sign bits and ONNX Runtime expands them to float at session start. Full-precision models get per-channel int8 weights for their
block convs (max |w| / 127, or / 126 with zero point 1: lossy, and reported as such).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from binexport.errors import InputError
from binexport.formats.onnx.graph import Graph, bn, downsample, onnx_pads, sign_table, unpack_signs
from binexport.model import Model

#: The int8 value of a +1 sign; the DQ scale is ``scale / WEIGHT_Q`` (±1 can't saturate int16 pair sums on
#: CPUs without VNNI, where ±127 against uint8 activations can).
WEIGHT_Q = 1
#: Weight zero points of the block convs (``--weight-zero-point``). Both are exact for 1-bit weights and give
#: bit-identical logits; they pick the CPU kernel. 0: codes {-1, +1} with zero point 0: ONNX Runtime's MLAS
#: symmetric direct convolution (AVX2 / AVX-512 / VNNI, no AMX), and OpenVINO's int8 convolution (AMX where
#: the CPU has it). 1: codes {0, 2} with zero point 1 (``(q - 1) * scale`` is exactly -scale / +scale): ONNX
#: Runtime's U8S8 QGEMM (im2col), which runs on AMX where the CPU has it, but OpenVINO then runs the convs in
#: float32 (measured: its kernels are ``brgconv_avx512_f32``).
WEIGHT_ZERO_POINTS = (0, 1)
#: The default, 0: the file that is fast on every CPU family with the right runtime (ONNX Runtime or OpenVINO
#: on CPUs without AMX, OpenVINO on AMX Xeons); 1 serves ONNX-Runtime-only deployments on AMX Xeons
#: (docs/runtimes.md has both machines' numbers).
DEFAULT_WEIGHT_ZERO_POINT = 0


def required_ranges(model: Model) -> list[str]:
    """The activation names whose (low, high) calibration ranges :func:`body` needs."""
    return [blk.prefix + t for blk in model.arch.blocks() for t in ("a", "b", "t")]


def check_zero_point(zero_point: int) -> int:
    """``zero_point`` if it is one of :data:`WEIGHT_ZERO_POINTS`, else an InputError naming the valid ones."""
    if isinstance(zero_point, bool) or zero_point not in WEIGHT_ZERO_POINTS:
        raise InputError(
            f"unknown int8 weight zero point {zero_point!r}; valid: "
            f"{', '.join(map(str, WEIGHT_ZERO_POINTS))} (default {DEFAULT_WEIGHT_ZERO_POINT})"
        )
    return int(zero_point)


def _bn_consts(model: Model, name: str) -> tuple[np.ndarray, np.ndarray]:
    """k, c with BN(x) = k * x + c per channel (float64)."""
    k = 1.0 / np.sqrt(model.floats[name + ".running_var"].astype(np.float64) + model.arch.bn_eps)
    c = -model.floats[name + ".running_mean"].astype(np.float64) * k
    return k, c


def body(
    g: Graph,
    model: Model,
    h: str,
    ranges: dict[str, tuple[float, float]],
    weight_zero_point: int = DEFAULT_WEIGHT_ZERO_POINT,
) -> str:
    """Add the int8 blocks after conv0's output ``h``; returns the tensor after the last residual Add.

    The float parts (BatchNorm, the downsampled shortcut) are :mod:`graph`'s, as in the float graph, so both
    compute them identically (the variant's eps, padding and pool divisor).
    ``weight_zero_point`` is one of :data:`WEIGHT_ZERO_POINTS` (which ONNX Runtime kernel the convs reach).

    Raises:
        InputError: a range is missing or not finite (calibration did not cover the graph).
    """
    missing = [n for n in required_ranges(model) if n not in ranges]
    bad = [n for n, r in ranges.items() if not all(np.isfinite(r))]
    if missing or bad:
        raise InputError(
            f"int8 export needs a finite calibration range for every quantized activation; missing "
            f"{', '.join(missing[:3]) or 'none'}, not finite {', '.join(bad[:3]) or 'none'}"
        )
    zp_w = check_zero_point(weight_zero_point)
    codes = sign_table(8, zp_w + WEIGHT_Q, zp_w - WEIGHT_Q, np.int8)
    table = g.const(f"int8_sign_table_q{WEIGHT_Q}_zp{zp_w}", codes, share=True)

    def const(name: str, arr: Any, share: bool = False) -> str:
        return g.const(name, np.asarray(arr), share=share)

    def quantize(x: str, name: str, relu: bool) -> tuple[str, str, str, float]:
        lo, hi = ranges[name]
        if relu:  # uint8, zero point 0: the clamp at 0 is the ReLU
            s, zp = max(float(hi), 1e-8) / 255.0, np.asarray(0, np.uint8)
        else:  # int8 symmetric
            s, zp = max(abs(float(lo)), abs(float(hi)), 1e-8) / 127.0, np.asarray(0, np.int8)
        sn = const(f"{name}.qscale", np.float32(s))
        zn = const(f"zp_{zp.dtype}", zp, share=True)
        return g.node("QuantizeLinear", [x, sn, zn]), sn, zn, float(np.float32(s))

    def dequantize(xq: str, sn: str, zn: str) -> str:
        return g.node("DequantizeLinear", [xq, sn, zn])

    def weight(name: str, channel_scale: np.ndarray) -> str:
        """DQ(int8 weight), per output channel; 1-bit weights from their packed bits."""
        o = channel_scale.shape[0]
        zn = const(f"zp_w{zp_w}_{o}", np.full(o, zp_w, np.int8), share=True)
        if name in model.binary:
            bw = model.binary[name]  # exact zeros dequantize to 0 at the weight zero point
            w = unpack_signs(g, table, name + ".bits", bw.signs, zeros=bw.zeros, zero_fill=np.int8(zp_w))
            sn = const(name + ".wscale", (channel_scale / WEIGHT_Q).astype(np.float32))
            return g.node("DequantizeLinear", [w, sn, zn], axis=0)
        wq, ws = _dense_int8(model, name, channel_scale, zp_w)
        sn = const(name + ".wscale", ws)
        return g.node("DequantizeLinear", [const(name + ".wq", wq), sn, zn], axis=0)

    def base_scale(name: str, out: int) -> np.ndarray:
        """The per-channel factor the stored weight is multiplied by: the 1-bit scale, or 1 for float weights."""
        return np.full(out, model.binary[name].scale if name in model.binary else 1.0, np.float64)

    arch = model.arch
    for blk in arch.blocks():
        p, width, stride = blk.prefix, blk.out_width, blk.stride
        aq, asn, azn, s_a = quantize(bn(g, model, h, p + "bn0", relu=False), p + "a", relu=True)
        k1, c1 = _bn_consts(model, p + "bn1")
        w0 = weight(p + "conv0", base_scale(p + "conv0", width) * k1)
        w0_scale = _dq_scale(model, p + "conv0", base_scale(p + "conv0", width) * k1, zp_w)
        bscale = (np.float32(s_a) * w0_scale).astype(np.float32)
        bq = np.clip(np.round(c1 / bscale), -(2**31), 2**31 - 1).astype(np.int32)
        bias = g.node(
            "DequantizeLinear",
            [
                const(p + "conv0.bq", bq),
                const(p + "conv0.bscale", bscale),
                const(f"zp_b_{width}", np.zeros(width, np.int32), share=True),
            ],
            axis=0,
        )
        t = g.node("Conv", [dequantize(aq, asn, azn), w0, bias], pads=onnx_pads(arch, 3, stride), strides=[stride] * 2)
        tq, tsn, tzn, _ = quantize(t, p + "b", relu=True)
        t = g.node(
            "Conv",
            [dequantize(tq, tsn, tzn), weight(p + "conv1", base_scale(p + "conv1", width))],
            pads=[1, 1, 1, 1],
        )
        t = dequantize(*quantize(t, p + "t", relu=False)[:3])
        if blk.shortcut:
            h = downsample(g, h, arch)
        h = g.node("Add", [h, t])
    return h


def _dq_scale(model: Model, name: str, channel_scale: np.ndarray, zero_point: int) -> np.ndarray:
    """The float32 per-channel scale the weight's DequantizeLinear uses (what the int32 bias grid must match)."""
    if name in model.binary:
        return (channel_scale / WEIGHT_Q).astype(np.float32)
    return _dense_int8(model, name, channel_scale, zero_point)[1]


def _dense_int8(model: Model, name: str, channel_scale: np.ndarray, zero_point: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel int8 codes and float32 scales of a full-precision weight (lossy).

    Codes are ``round(w / s) + zero_point`` and must stay in int8, so a zero point of 1 leaves 126 steps each
    side of zero instead of 127.
    """
    o = channel_scale.shape[0]
    steps = 127 - zero_point
    dense = np.asarray(model.floats[name], np.float64) * channel_scale.reshape(-1, 1, 1, 1)
    ws = np.maximum(np.abs(dense.reshape(o, -1)).max(1), 1e-30) / steps
    wq = np.clip(np.round(dense / ws.reshape(-1, 1, 1, 1)), -steps, steps) + zero_point
    return wq.astype(np.int8), ws.astype(np.float32)
