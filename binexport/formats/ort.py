"""ONNX Runtime's own ``.ort`` format (ORT Mobile): written from a validated ONNX file, bounded before it runs.

Writing: ONNX Runtime serialises the graph it loaded (``session.save_model_format=ORT``, the mechanism of
``python -m onnxruntime.tools.convert_onnx_models_to_ort``), then its ``create_config_from_models`` writes the
reduced-build operator config with type reduction. The optimisation style is the converter's "Fixed" at level
``all`` for ARM (its default: NCHWc excluded) with one difference: **constant folding is off**. Every level of
the converter folds the in-graph unpack of the 1-bit weights, storing them as 27 MB of int8/float (measured on
the demo WRN-20-10: 26.9-27.0 MB for every level and style but ``disable``, against 3.48 MB for the int8 ONNX);
without folding the file stays within 2 % of the ONNX and keeps the QLinearConv fusions (``disable`` keeps the
size too but then runs dequantised float convs). The file is the graph ONNX Runtime optimised, stored: a session
on it gives logits bit-identical to one on the ``.onnx`` opened with :data:`DISABLED_OPTIMIZERS` disabled, on the
same batches; against the ``.onnx`` with every default optimiser they differ by float rounding (NCHWc kernels,
Conv+BatchNormalization fused after folding), up to ~4e-3 on int8 logits (docs/phones.md measures each).

Reading: a ``.ort`` file is a flatbuffer (identifier ``ORTM`` at bytes 4..8). ONNX's checker and shape
inference can't read it, so :func:`check_ort_bounds` bounds it structurally before any session opens it,
parsing it with ONNX Runtime's own generated flatbuffer classes (docs/safety.md):

- at most :data:`MAX_ORT_BYTES`; no subgraphs; every initializer holds exactly the bytes its dims declare and
  none is external;
- every node is one of :data:`ORT_OPS`, the operators binexport's graphs use after ONNX Runtime's
  optimisations. None of them makes a tensor larger than its inputs and initializers imply (no
  ``ConstantOfShape``, ``Expand``, ``Tile``, ``Range``, ``Resize``, ``Pad``, ``ConvTranspose``: the ops that
  allocate from a value), so memory is bounded by the file's size and the 32x32 input;
- ONNX Runtime runs no graph optimiser on a ``.ort`` file at load (it is stored optimised), so nothing is
  constant-folded at session start.
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path
from typing import Any

from binexport.errors import InputError

#: The flatbuffer file identifier of ONNX Runtime's format, at bytes 4..8.
ORT_IDENTIFIER = b"ORTM"
#: A ``.ort`` file larger than this is refused (binexport's largest, float32 WRN-20-10, is ~110 MB).
MAX_ORT_BYTES = 512 << 20
#: The operators a ``.ort`` file may use (domain, op type): binexport's float, float16, 1-bit and int8 graphs after
#: ONNX Runtime's optimisations (the NHWC int8 transformer's com.microsoft QLinearConv included).
ORT_OPS: frozenset[tuple[str, str]] = frozenset(
    {
        ("", op)
        for op in (
            "Add",
            "AveragePool",
            "BatchNormalization",
            "Cast",
            "Concat",
            "Conv",
            "DequantizeLinear",
            "Flatten",
            "Gather",
            "GlobalAveragePool",
            "Mul",
            "QuantizeLinear",
            "QLinearConv",
            "Relu",
            "Reshape",
            "Transpose",
            "Sub",
            "Div",
            "Identity",
            "Sign",
            "Where",
            "Greater",
            "Less",
            "Neg",
            "Squeeze",
            "Unsqueeze",
            "Gemm",
            "MatMul",
            "Shape",
            "Slice",
            "BitShift",
            "BitwiseAnd",
            "Softmax",
            "Max",
            "Min",
            "Clip",
            "QLinearMatMul",
            "QLinearAdd",
            "QLinearGlobalAveragePool",
            "FusedConv",
        )
    }  # fmt: skip
    | {
        ("com.microsoft", op)
        for op in (
            "QLinearConv",
            "QLinearAdd",
            "QLinearGlobalAveragePool",
            "FusedConv",
            "NhwcMaxPool",
            "QLinearAveragePool",
            "FusedGemm",
        )
    }  # fmt: skip
)
#: The name of the operator config file the converter writes (for the reduced build's ``--include_ops_by_config``).
CONFIG_SUFFIX = ".required_operators_and_types.config"
#: The converter's optimiser exclusions for a portable file: NCHWc is x86-only (the converter drops it for ARM).
DISABLED_OPTIMIZERS = ("ConstantFolding", "NchwcTransformer")
#: The optimisation style, as reports name it.
STYLE = "Fixed, level all without ConstantFolding and NchwcTransformer (portable; the 1-bit unpack is not folded)"
#: ONNX TensorProto data type -> bytes per element, for the initializer size check.
_ITEMSIZE = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}
#: What the flatbuffer classes raise on a malformed buffer.
_PARSE_ERRORS = (ValueError, IndexError, TypeError, AttributeError, struct.error, UnicodeDecodeError, RuntimeError)


def sniff(head: bytes) -> bool:
    """Whether these leading bytes are a flatbuffer with ONNX Runtime's identifier."""
    return len(head) >= 8 and head[4:8] == ORT_IDENTIFIER


def _fbs() -> Any:
    import onnxruntime.tools.ort_format_model  # noqa: F401  (puts ort_flatbuffers_py on the path)
    import ort_flatbuffers_py.fbs as fbs  # type: ignore[import-not-found]

    return fbs


def check_ort_bounds(path: str | Path) -> list[tuple[str, str]]:
    """Refuse a ``.ort`` file that could make ONNX Runtime allocate more than its size justifies.

    Returns:
        The sorted (domain, op type) pairs the graph uses.

    Raises:
        InputError: oversized, malformed, with a subgraph, an unknown operator or an initializer whose bytes are not
            what its dims declare (one line, naming it).
    """
    p = Path(path)
    size = p.stat().st_size
    if size > MAX_ORT_BYTES:
        raise InputError(f"{p}: a .ort file of {size:,} bytes; binexport opens at most {MAX_ORT_BYTES >> 20} MiB")
    buf = bytearray(p.read_bytes())
    fbs = _fbs()
    try:
        if not fbs.InferenceSession.InferenceSession.InferenceSessionBufferHasIdentifier(buf, 0):
            raise InputError(f"{p}: not an ONNX Runtime .ort file (no ORTM identifier)")
        model = fbs.InferenceSession.InferenceSession.GetRootAsInferenceSession(buf, 0).Model()
        graph = model.Graph() if model is not None else None
        if graph is None:
            raise InputError(f"{p}: the .ort file holds no graph")
        ops = set()
        for i in range(graph.NodesLength()):
            node = graph.Nodes(i)
            op = ((node.Domain() or b"").decode(), (node.OpType() or b"").decode())
            op = ("" if op[0] == "ai.onnx" else op[0], op[1])
            if op not in ORT_OPS:
                raise InputError(
                    f"{p}: node {i} is {op[0] or 'ai.onnx'}.{op[1]}, an operator binexport's graphs never use; "
                    "binexport runs only .ort files it can bound (docs/safety.md)"
                )
            for j in range(node.AttributesLength()):
                if node.Attributes(j).Type() in (5, 10):  # GRAPH, GRAPHS
                    raise InputError(f"{p}: node {i} ({op[1]}) has a subgraph; binexport's graphs have none")
            ops.add(op)
        for i in range(graph.InitializersLength()):
            t = graph.Initializers(i)
            dims = [int(d) for d in (t.DimsAsNumpy() if t.DimsLength() else [])]
            item = _ITEMSIZE.get(t.DataType())
            n = 1
            for d in dims:
                n *= d
            if item is None or any(d < 0 for d in dims) or t.ExternalDataOffset() >= 0 or t.RawDataLength() != n * item:
                raise InputError(
                    f"{p}: initializer {(t.Name() or b'').decode()!r} (type {t.DataType()}, dims {dims}) holds "
                    f"{t.RawDataLength()} bytes, not the {n * (item or 0)} its dims declare, or is external/"
                    "non-numeric; the file is corrupt or not binexport's"
                )
    except _PARSE_ERRORS as e:
        raise InputError(f"{p}: malformed .ort flatbuffer ({type(e).__name__}: {str(e)[:100]})") from None
    return sorted(ops)


def convert(onnx_path: str | Path) -> tuple[bytes, str]:
    """The ``.ort`` bytes of a validated ONNX file and its reduced-build operator config (with type reduction).

    ONNX Runtime optimises and serialises the graph itself (see the module docstring for the style chosen);
    the config comes from ``onnxruntime.tools.ort_format_model.create_config_from_models``.

    Raises:
        InputError: ONNX Runtime can't load the graph or the tools are missing.
    """
    import logging

    import onnxruntime as ort
    from onnxruntime.tools.ort_format_model import create_config_from_models

    logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)  # its INFO line names a temp path

    with tempfile.TemporaryDirectory(prefix="binexport-ort-") as d:
        out, cfg = Path(d) / "model.ort", Path(d) / "model.config"
        so = ort.SessionOptions()
        so.optimized_model_filepath = str(out)
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.add_session_config_entry("session.save_model_format", "ORT")
        so.log_severity_level = 3
        try:
            ort.InferenceSession(
                str(onnx_path), so, providers=["CPUExecutionProvider"], disabled_optimizers=list(DISABLED_OPTIMIZERS)
            )
            create_config_from_models([out], cfg, True)
        except Exception as e:  # noqa: BLE001  ONNX Runtime raises its own types and RuntimeError
            raise InputError(
                f"{onnx_path}: ONNX Runtime could not convert it to .ort ({str(e).strip()[:200]})"
            ) from None
        lines = [ln for ln in cfg.read_text().splitlines() if not ln.startswith("# - ")]  # drop temp paths
        return out.read_bytes(), "\n".join(lines) + "\n"


def mobile_usability(onnx_path: str | Path) -> list[str]:
    """What ``onnxruntime.tools.check_onnx_model_mobile_usability`` says of an ONNX file, as its log lines.

    Runs the checker in-process through its own function and captures its logger.
    """
    import logging

    from onnxruntime.tools.mobile_helpers.usability_checker import analyze_model

    logger = logging.getLogger("binexport.mobile_usability")
    lines: list[str] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.extend(s.rstrip() for s in record.getMessage().splitlines() if s.strip())

    logger.handlers, logger.propagate = [_Keep()], False
    logger.setLevel(logging.INFO)
    try:
        try_eps = analyze_model(Path(onnx_path), skip_optimize=False, logger=logger)
        lines.append(
            "NNAPI (Android) or CoreML (iOS) may help: compare them with the CPU EP on the device"
            if try_eps
            else "for optimal performance use the CPU EP (the checker's recommendation)"
        )
    except Exception as e:  # noqa: BLE001  the checker raises whatever its helpers raise
        lines.append(f"the mobile usability check failed: {str(e).strip()[:200]}")
    return lines
