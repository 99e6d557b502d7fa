"""Can a sub-byte weight lowering of WRN-20-10's 3x3 convs reach int8's speed? One layer, side by side.

ONNX Runtime's ``MatMulNBits`` (com.microsoft; 2- or 4-bit weights, the only sub-byte kernel it has) needs the
convolution lowered to a MatMul: NHWC input, ``Pad`` and nine ``Slice``s concatenated into the im2col matrix
(N, H, W, 9C), then ``MatMulNBits`` against the (9C, O) weight. The 1-bit weights are exactly ``(q - zp) * scale``
with one block scale. Compared on the two extreme layers of WRN-20-10 (160 channels at 32x32, 640 at 8x8),
interleaved, one session per graph, the best call of each (the machine is shared), ratios to the float Conv:

- ``float``: Conv with a float32 constant weight (ONNX Runtime prepacks it, NCHWc);
- ``int8``: the int8 file's block conv: Q/DQ(uint8) -> Conv with DQ(int8 ±1) weights -> Q/DQ(int8), fused by
  ONNX Runtime into QLinearConv (activation scales arbitrary: speed, not accuracy);
- ``int2``: the ``--weights int2`` conv: DQ(INT2 ±1, scale) -> Conv;
- ``nbits4`` / ``nbits2`` at ``accuracy_level`` 0 (float compute) and 4 (int8 compute, activations quantized
  per block: lossy).

Usage: python benchmarks/bench_matmulnbits.py [--seconds 4] [--batches 1,64]
Prints a markdown table for docs/BENCHMARKS.md. Weight bytes are computed, not measured: WRN-20-10's 26.7 M block
conv weights take 12.7 MiB at 4 bits and 6.4 MiB at 2 bits, plus scales.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from binexport.formats.onnx.int2 import INT2, pack_codes
from binexport.verbs.bench import cpu_info

LAYERS = {"160ch 32x32": (160, 32), "640ch 8x8": (640, 8)}


def _model(nodes: list, inputs: list, inits: list, out_shape: list, ms: bool = False) -> bytes:
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)
    g = helper.make_graph(nodes, "layer", inputs, [y], inits)
    opsets = [helper.make_opsetid("", 25)] + ([helper.make_opsetid("com.microsoft", 1)] if ms else [])
    return helper.make_model(g, opset_imports=opsets, ir_version=11).SerializeToString()


def conv_graphs(c: int, hw: int, signs: np.ndarray, scale: float) -> dict[str, bytes]:
    """Every variant of one 3x3, stride-1 conv of ``c`` channels on ``hw`` x ``hw``, weight ``signs`` * ``scale``."""
    nchw = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, hw, hw])
    nhwc = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", hw, hw, c])
    out_nchw, out_nhwc = ["N", c, hw, hw], ["N", hw, hw, c]
    w = np.where(signs, scale, -scale).astype(np.float32)
    pads = {"pads": [1, 1, 1, 1]}
    graphs = {
        "float": _model(
            [helper.make_node("Conv", ["x", "w"], ["y"], **pads)], [nchw], [numpy_helper.from_array(w, "w")], out_nchw
        )
    }
    q = [
        numpy_helper.from_array(np.array(0.05, np.float32), "sx"),
        numpy_helper.from_array(np.array(0, np.uint8), "zx"),
        numpy_helper.from_array(np.where(signs, 1, -1).astype(np.int8), "wq"),
        numpy_helper.from_array(np.full(c, scale, np.float32), "sw"),
        numpy_helper.from_array(np.zeros(c, np.int8), "zw"),
    ]
    graphs["int8"] = _model(
        [
            helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
            helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
            helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["wd"], axis=0),
            helper.make_node("Conv", ["xd", "wd"], ["yc"], **pads),
            helper.make_node("QuantizeLinear", ["yc", "sx", "zy"], ["yq"]),  # Q after the conv: QLinearConv
            helper.make_node("DequantizeLinear", ["yq", "sx", "zy"], ["y"]),
        ],
        [nchw],
        [*q, numpy_helper.from_array(np.array(0, np.int8), "zy")],
        out_nchw,
    )
    t = onnx.TensorProto(name="w2", data_type=INT2, dims=list(signs.shape), raw_data=pack_codes(signs))
    graphs["int2"] = _model(
        [
            helper.make_node("DequantizeLinear", ["w2", "sw"], ["wd"], axis=0),
            helper.make_node("Conv", ["x", "wd"], ["y"], **pads),
        ],
        [nchw],
        [t, q[3]],
        out_nchw,
    )
    # im2col in NHWC: k = (ky, kx, c), matching the (O, ky, kx, C) weight flattened per output channel
    cols = np.transpose(signs, (0, 2, 3, 1)).reshape(c, 9 * c)  # (O, K)
    slices = []
    inits = [
        numpy_helper.from_array(np.array([0, 1, 1, 0, 0, 1, 1, 0], np.int64), "pads"),
        numpy_helper.from_array(np.array([1, 2], np.int64), "axes12"),
    ]
    nodes = [helper.make_node("Pad", ["x", "pads"], ["xp"])]
    for ky in range(3):
        for kx in range(3):
            name = f"s{ky}{kx}"
            inits += [
                numpy_helper.from_array(np.array([ky, kx], np.int64), name + "b"),
                numpy_helper.from_array(np.array([ky + hw, kx + hw], np.int64), name + "e"),
            ]
            nodes.append(helper.make_node("Slice", ["xp", name + "b", name + "e", "axes12"], [name]))
            slices.append(name)
    nodes.append(helper.make_node("Concat", slices, ["col"], axis=3))
    k, block = 9 * c, 32
    for bits in (4, 2):
        zp = 1 << (bits - 1)
        codes = np.where(cols, zp + 1, zp - 1).astype(np.uint8).reshape(c, k // block, block)
        per = 8 // bits
        packed = np.zeros((c, k // block, block // per), np.uint8)
        for j in range(per):
            packed |= codes[:, :, j::per] << (bits * j)
        blob = [
            numpy_helper.from_array(packed, "wb"),
            numpy_helper.from_array(np.full(c * (k // block), scale, np.float32), "ws"),
        ]
        for level in (0, 4):
            mm = helper.make_node(
                "MatMulNBits",
                ["col", "wb", "ws"],
                ["y"],
                domain="com.microsoft",
                K=k,
                N=c,
                bits=bits,
                block_size=block,
                accuracy_level=level,
            )
            graphs[f"nbits{bits} acc{level}"] = _model(nodes + [mm], [nhwc], inits + blob, out_nhwc, ms=True)
    return graphs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--batches", default="1,64")
    a = ap.parse_args()
    name, flags = cpu_info()
    print(f"{datetime.date.today()}, {platform.platform()}, {name} ({', '.join(flags)}), ORT {ort.__version__}\n")
    print("| layer | batch | variant | best ms per call | speed vs float | max abs diff vs float |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    rng = np.random.default_rng(0)
    for label, (c, hw) in LAYERS.items():
        signs = rng.random((c, c, 3, 3)) > 0.5
        graphs = conv_graphs(c, hw, signs, float(np.sqrt(2.0 / (9 * c))))
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sessions = {}
        for v, g in graphs.items():
            try:
                sessions[v] = ort.InferenceSession(g, opts, providers=["CPUExecutionProvider"])
            except Exception as e:  # noqa: BLE001 - report what ORT refuses, keep measuring the rest
                print(f"| {label} | - | {v} | refused: {str(e).splitlines()[0][:100]} | | |")
        for batch in map(int, a.batches.split(",")):
            x = np.maximum(rng.standard_normal((batch, c, hw, hw)), 0).astype(np.float32)
            xs = {v: (np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if v.startswith("nbits") else x) for v in sessions}
            ref = sessions["float"].run(None, {"x": x})[0]
            times: dict[str, list[float]] = {v: [] for v in sessions}
            diffs = {}
            for v, s in sessions.items():
                y = s.run(None, {"x": xs[v]})[0]
                diffs[v] = float(np.abs((y.transpose(0, 3, 1, 2) if v.startswith("nbits") else y) - ref).max())
            deadline = time.perf_counter() + a.seconds * len(sessions)
            while time.perf_counter() < deadline:  # interleaved: one call of each variant per round
                for v, s in sessions.items():
                    t0 = time.perf_counter()
                    s.run(None, {"x": xs[v]})
                    times[v].append(time.perf_counter() - t0)
            base = float(np.min(times["float"]))
            for v in sessions:
                ms = float(np.min(times[v]))
                print(f"| {label} | {batch} | {v} | {ms * 1000:.2f} | {base / ms:.2f}x | {diffs[v]:.1e} |", flush=True)


if __name__ == "__main__":
    main()
