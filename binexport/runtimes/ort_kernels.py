"""What ONNX Runtime really runs: its own optimised graph, counted, and the MLAS path each QLinearConv takes.

:meth:`binexport.runtimes.ort.OrtRuntime.kernels` reports :func:`describe_kernels` of :func:`optimized_ops`;
``to-onnx``'s validation counts the fused QLinearConvs the same way.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from binexport.runtimes.cpu import has_amx

#: Ops of an optimised graph that do a network's arithmetic, in the order :func:`describe_kernels` names them.
KERNEL_OPS = ("QLinearConv", "ConvInteger", "FusedConv", "Conv", "QLinearAdd", "MatMulInteger", "Gemm", "MatMul")


@dataclass
class OptimizedOps:
    """Op counts of the graph ONNX Runtime really runs, and the weight zero points of its QLinearConvs.

    MLAS picks a QLinearConv's kernel from its weight zero points: all 0 sends it to the symmetric direct
    convolution (AVX2 / AVX-512 / VNNI, no AMX variant), any other to the U8S8 QGEMM, which runs on AMX where
    the CPU has it (from CPUID at run time; no session option chooses it).
    """

    ops: Counter = field(default_factory=Counter)  # op_type -> nodes
    qlinearconv_weight_zp_zero: int = 0
    qlinearconv_weight_zp_nonzero: int = 0
    nchwc_convs: int = 0  # Conv nodes ONNX Runtime moved to its blocked NCHWc layout (com.microsoft.nchwc)

    def count(self, op: str) -> int:
        return int(self.ops.get(op, 0))


def optimized_ops(model: bytes | str, provider: str = "CPUExecutionProvider") -> OptimizedOps:
    """Optimise ``model`` as a session on ``provider`` would and count what is left (ORT's own graph, not ours).

    Args:
        model: an ONNX file path or serialized bytes.
        provider: the execution provider whose optimisations apply (the CPU one falls back behind any other).

    Returns:
        :class:`OptimizedOps`.

    Raises:
        ONNX Runtime's own errors (:func:`binexport.runtimes.ort.ort_errors`) for a graph it can't load.
    """
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    with tempfile.TemporaryDirectory() as d:
        opts = ort.SessionOptions()
        opts.log_severity_level = 4
        opts.intra_op_num_threads = 1
        opts.optimized_model_filepath = os.path.join(d, "optimized.onnx")
        providers = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
        ort.InferenceSession(model, opts, providers=providers)
        graph = onnx.load(opts.optimized_model_filepath).graph
    inits = {i.name: i for i in graph.initializer}
    out = OptimizedOps(ops=Counter(n.op_type for n in graph.node))
    for n in graph.node:
        if n.op_type == "Conv" and n.domain == "com.microsoft.nchwc":
            out.nchwc_convs += 1
        if n.op_type == "QLinearConv" and len(n.input) > 5 and n.input[5] in inits:
            zp = numpy_helper.to_array(inits[n.input[5]])
            if np.any(zp != 0):
                out.qlinearconv_weight_zp_nonzero += 1
            else:
                out.qlinearconv_weight_zp_zero += 1
    return out


def describe_kernels(ops: OptimizedOps, mlas: bool = True) -> str:
    """One short line: the arithmetic ops by count, and which MLAS path each QLinearConv takes (``mlas``: the
    CPU provider runs them). E.g. ``"18 QLinearConv (MLAS QGEMM: weight zp != 0; AMX on this CPU), 3 Conv"``."""
    amx = has_amx()
    where = "AMX where the CPU has it" if amx is None else "AMX on this CPU" if amx else "this CPU has no AMX"
    parts = []
    for op in KERNEL_OPS:
        n = ops.count(op)
        if not n:
            continue
        if op == "QLinearConv" and mlas:
            zero, nonzero = ops.qlinearconv_weight_zp_zero, ops.qlinearconv_weight_zp_nonzero
            if nonzero:
                parts.append(f"{nonzero} QLinearConv (MLAS QGEMM: weight zp != 0; {where})")
            if zero:
                parts.append(f"{zero} QLinearConv (MLAS symmetric direct conv: weight zp = 0; no AMX)")
            if n - zero - nonzero:
                parts.append(f"{n - zero - nonzero} QLinearConv")
        elif op == "Conv" and mlas and ops.nchwc_convs:
            parts.append(
                f"{n} Conv ({ops.nchwc_convs} MLAS NCHWc)" if ops.nchwc_convs < n else f"{n} Conv (MLAS NCHWc)"
            )
        else:
            parts.append(f"{n} {op}")
    return ", ".join(parts)
