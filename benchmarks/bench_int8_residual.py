"""Experiment: the residual stream in uint8, so ONNX Runtime fuses com.microsoft::QLinearAdd.

Not shipped: on the real WRN-20-10 it was neither faster nor halved batch-64 peak RSS (docs/BENCHMARKS.md,
"int8 weight encoding" section). Kept so the numbers can be re-measured.

The variant is graph surgery on binexport's int8 graph: each residual Add gets DequantizeLinear(uint8) on both
inputs (the residual stream quantized with the previous block output's calibrated range, the block output ``t``
re-quantized from int8 symmetric to uint8 asymmetric) and QuantizeLinear(uint8) -> DequantizeLinear on its
output, so ORT 1.31.1 fuses DQ, DQ -> Add -> Q into QLinearAdd (scalar scales and zero points; the earlier
attempt failed on per-channel ones).

Usage: python benchmarks/bench_int8_residual.py [--weight-zero-point 1] [--seconds 15]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

import binexport
from binexport.data import load_test_set, normalize
from binexport.data.calibration import load_calibration
from binexport.formats.onnx import build_model
from binexport.runtimes.ort import open_session
from binexport.runtimes.torch_ref import TorchRuntime

REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata"
CKPT = REAL / "seed-checkpoint" / "wrn20-10-1bit-packed.pth.tar"
DATA = REAL / "cifar100-partial"


def uint8_qparams(lo: float, hi: float) -> tuple[np.float32, np.uint8]:
    """Scale and zero point of an asymmetric uint8 range that contains 0."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    s = max(hi - lo, 1e-8) / 255.0
    return np.float32(s), np.uint8(np.clip(round(-lo / s), 0, 255))


def residual_uint8(
    proto: onnx.ModelProto, ranges: dict[str, tuple[float, float]], blocks: list[str]
) -> onnx.ModelProto:
    """``proto`` (an int8 graph from build_model) with every residual Add quantized as described above."""
    nodes = list(proto.graph.node)
    producer = {o: n for n in nodes for o in n.output}
    adds = [
        n
        for n in nodes
        if n.op_type == "Add" and n.input[1] in producer and producer[n.input[1]].op_type == "DequantizeLinear"
    ]
    if len(adds) != len(blocks):
        raise ValueError(f"expected {len(blocks)} residual Adds, found {len(adds)}")
    inits: list[onnx.TensorProto] = []

    def const(name: str, arr: object) -> str:
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def qdq(x: str, s: np.float32, z: np.uint8, tag: str) -> tuple[list[onnx.NodeProto], str]:
        sn, zn = const(f"res_s_{tag}", s), const(f"res_z_{tag}", z)
        q = helper.make_node("QuantizeLinear", [x, sn, zn], [f"resq_{tag}"], name=f"ResQ_{tag}")
        dq = helper.make_node("DequantizeLinear", [q.output[0], sn, zn], [f"resdq_{tag}"], name=f"ResDQ_{tag}")
        return [q, dq], dq.output[0]

    out: list[onnx.NodeProto] = []
    rename: dict[str, str] = {}
    prev = ranges["h0"]
    for n in nodes:
        for i, x in enumerate(n.input):
            if x in rename:
                n.input[i] = rename[x]
        if n not in adds:
            out.append(n)
            continue
        k = adds.index(n)
        p = blocks[k]
        if not n.input[0].startswith("resdq_out"):  # a downsampled stream (or the first block): quantize it
            more, n.input[0] = qdq(n.input[0], *uint8_qparams(*prev), f"in{k}")
            out += more
        dq_t = producer[n.input[1]]
        q_t = producer[dq_t.input[0]]
        s, z = uint8_qparams(*ranges[p + "t"])
        q_t.input[1] = dq_t.input[1] = const(f"t_s_{k}", s)
        q_t.input[2] = dq_t.input[2] = const(f"t_z_{k}", z)
        out.append(n)
        more, rename[n.output[0]] = qdq(n.output[0], *uint8_qparams(*ranges[p + "h"]), f"out{k}")
        out += more
        prev = ranges[p + "h"]
    del proto.graph.node[:]
    proto.graph.node.extend(out)
    proto.graph.initializer.extend(inits)
    return proto


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weight-zero-point", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=15.0)
    a = ap.parse_args()
    model = binexport.load(CKPT)
    ref = TorchRuntime(model)
    cal = load_calibration("CIFAR100", DATA, limit=256)
    ranges = ref.activation_ranges(normalize(cal.images), 99.999)
    blocks = [blk.prefix for blk in model.arch.blocks()]
    test = load_test_set(dataset="CIFAR100", data_root=DATA)
    x, y = normalize(test.images), test.labels
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        files = {"float32": d / "float32.onnx", "int8": d / "int8.onnx", "int8-residual-uint8": d / "res.onnx"}
        files["float32"].write_bytes(build_model(model, weights="float32").SerializeToString())
        for name in ("int8", "int8-residual-uint8"):
            proto = build_model(model, weights="int8", int8_ranges=ranges, int8_weight_zero_point=a.weight_zero_point)
            if name != "int8":
                proto = residual_uint8(proto, ranges, blocks)
            files[name].write_bytes(proto.SerializeToString())
        logits = {}
        for name in ("int8", "int8-residual-uint8"):
            rt = open_session(str(files[name]))
            logits[name] = rt.logits(x, 64)
            print(f"{name}: {rt.kernels()}; top-1 {100 * (logits[name].argmax(1) == y).mean():.1f} %")
        base, res = logits["int8"], logits["int8-residual-uint8"]
        print(
            f"residual uint8 vs int8: agreement {100 * (base.argmax(1) == res.argmax(1)).mean():.1f} %, "
            f"max |Δ logit| {np.abs(base - res).max():.3f}"
        )
        r = binexport.bench(list(files.values()), batch_size=64, seconds=a.seconds)
        for name, row in zip(files, r.rows, strict=True):
            print(
                f"{name}: {row.speed_ratio:.2f}x float32, peak RSS {row.peak_rss_bytes / 2**20:.0f} MiB "
                f"({row.rss_ratio:.2f}x), batch-1 latency {row.latency_ms_median:.1f} ms"
            )


if __name__ == "__main__":
    main()
