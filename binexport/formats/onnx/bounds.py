"""What an ONNX graph may make ONNX Runtime allocate, checked before any session exists.

An ONNX file is a program: 374 bytes of ``ConstantOfShape([400000000])`` make
ONNX Runtime allocate 1.6 GB while it constant-folds the graph at session
start, before a single image runs. So a graph from a stranger is read as data
first and every tensor it can make is sized from its declared shapes:

- every initializer and tensor attribute holds exactly the bytes its dims
  declare (no external data, no sparse tensors, plain numeric types only);
- no subgraphs (``If``/``Loop``/``Scan``), no local functions, no operator
  domain but the standard one: what can't be sized is refused;
- ONNX shape inference (strict, with data propagation, the batch dimension
  symbolic) must give every node output a fully known shape in which the
  batch appears at most once;
- a tensor with the batch dimension is an activation: at most
  :data:`MAX_IMAGE_TENSOR_BYTES` per image, all of them together at most
  ``IMAGE_TOTAL_FACTOR x file size + IMAGE_TOTAL_SLACK_BYTES`` per image;
- a tensor without it is a constant (weights, the 1-bit graphs' float weights
  expanded at session start, shapes): each at most
  ``CONST_TENSOR_FACTOR x file size + CONST_SLACK_BYTES``, all of them together
  at most ``CONST_TOTAL_FACTOR x file size + CONST_SLACK_BYTES``.

Every graph binexport writes passes (float32, float16, 1-bit, int8 QDQ,
``--normalize-inside``, McDonnell's variants): WRN-20-10, the widest model in
use, has activations of at most 640 KiB per image and 26-29 MiB per image in
all (7-9x its 1-bit file; 2.6 MiB for WRN-20-1); a 1-bit graph's expanded float
weights are 32x their packed bytes (its largest constant is 4x the whole file)
and all its constants together 62-67x the file. So memory at batch B is at most
``const_total + B x image_total`` (:meth:`OnnxBounds.peak_bound`): for a
374-byte file 16 MiB + B x 8 MiB, whatever the graph says.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from binexport.errors import InputError

#: One activation: 1,024 channels of 32x32 float32 (a WRN of width 64; WRN-20-10's widest is 160 channels).
MAX_IMAGE_TENSOR_BYTES = 4 << 20
#: Every activation together, per image: 64x the file (WRN-20-10: 26-29 MiB per image, 7-9x its 1-bit file;
#: thin deep WRNs have the most activation per weight: WRN-100-1 about 13 MiB for a 190 KB 1-bit file) ...
IMAGE_TOTAL_FACTOR = 64
#: ... plus this, whatever the size (WRN-20-1: about 2.6 MiB per image).
IMAGE_TOTAL_SLACK_BYTES = 8 << 20
#: A constant may be 32x the file: 1-bit weights stored as bits become float32 at session start.
CONST_TENSOR_FACTOR = 32
#: All constants together: per packed byte its int32 index (4 B), 8 gathered floats (32 B), reshaped (32 B),
#: maybe sliced (32 B): 100x at most; binexport's 1-bit graphs measure 62-67x.
CONST_TOTAL_FACTOR = 128
#: Small graphs get this much room whatever their size (shape tensors, tables, a tiny model's weights).
CONST_SLACK_BYTES = 16 << 20
#: Initializers above this many bytes are sized from their dims alone; shape inference never needs their values.
_VALUE_FREE_BYTES = 4096
#: The batch symbol the graph input's first dimension is given for inference.
_BATCH = "__binexport_batch__"
#: Plain numeric element types: ONNX TensorProto.DataType -> bytes per element.
_ITEMSIZE = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}
#: The typed-data field each element type keeps its values in when not in raw_data.
_FIELD = {
    1: "float_data",
    2: "int32_data",
    3: "int32_data",
    4: "int32_data",
    5: "int32_data",
    6: "int32_data",
    7: "int64_data",
    9: "int32_data",
    10: "int32_data",
    11: "double_data",
    12: "uint64_data",
    13: "uint64_data",
    16: "int32_data",
}
_STANDARD_DOMAINS = ("", "ai.onnx")
#: Packed sub-byte element types: TensorProto.DataType -> elements per byte (INT2, ``--weights int2``).
_PER_BYTE = {26: 4}


@dataclass(frozen=True)
class OnnxBounds:
    """What a graph passed with: its largest tensors, per image and constant, in bytes."""

    file_bytes: int
    image_tensor_bytes: int  # the largest activation, per image
    image_total_bytes: int  # every activation together, per image
    const_tensor_bytes: int  # the largest constant
    const_total_bytes: int  # every constant together

    def peak_bound(self, batch: int) -> int:
        """Bytes every tensor together may take at ``batch`` images: what the checks guarantee, at most."""
        return self.const_total_bytes + batch * self.image_total_bytes


def check_onnx_bounds(model: bytes | str | os.PathLike[str], where: str = "") -> OnnxBounds:
    """Refuse an ONNX graph whose tensors can't be sized, or whose sizes pass the bounds above; else its sizes.

    Call it before creating any session (ONNX Runtime or another): sessions allocate while they load.

    Args:
        model: the serialized ModelProto or a path to it.
        where: what to name in messages (default: the path).

    Returns:
        An :class:`OnnxBounds` of the graph's largest tensors.

    Raises:
        InputError: the graph can't be parsed or sized, uses what can't be sized, or passes a bound.

    Example:
        >>> check_onnx_bounds("model.onnx").image_tensor_bytes   # doctest: +SKIP
        655360
    """
    import onnx

    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    where = where or (os.fsdecode(model) if not isinstance(model, bytes) else "the ONNX graph")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError has no stable import path across versions
        raise InputError(f"{where}: not a readable ONNX graph ({str(e)[:100]}); expected an ONNX model file") from None
    del data
    return _check(proto, len(model) if isinstance(model, bytes) else Path(model).stat().st_size, where)


def _check(proto: Any, file_bytes: int, where: str) -> OnnxBounds:
    import onnx

    g = proto.graph
    if len(proto.functions):
        raise InputError(
            f"{where}: the graph defines {len(proto.functions)} local functions; binexport runs plain "
            "graphs of standard ONNX operators only (re-export it without functions)"
        )
    if len(g.sparse_initializer):
        raise InputError(
            f"{where}: the graph has sparse initializers, whose dense size is not in the file; "
            "expected dense initializers"
        )
    for t in g.initializer:
        _check_tensor(t, f"initializer {t.name!r}", where)
    for node in g.node:
        _check_node(node, where)
    weights = {t.name for t in g.initializer}  # IR < 4 lists initializers among the inputs too
    images = [i for i in g.input if i.name not in weights]
    if not images or len(images[0].type.tensor_type.shape.dim) < 1:
        raise InputError(
            f"{where}: the graph input has no shape; expected an image batch (N, 3, 32, 32) or (N, 32, 32, 3)"
        )
    _strip_large_values(g)
    dim0 = images[0].type.tensor_type.shape.dim[0]
    dim0.Clear()
    dim0.dim_param = _BATCH  # a fixed batch too: its tensors are sized per image like the others
    del g.value_info[:]  # declared shapes are claims: every shape below is inferred from the input's
    for out in g.output:
        out.type.tensor_type.ClearField("shape")
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    except Exception as e:  # noqa: BLE001 - onnx raises InferenceError, ValidationError, RuntimeError...
        raise InputError(
            f"{where}: ONNX shape inference fails on the graph ({_first_line(e)}); binexport sizes "
            "every tensor before running a graph, so it can't run this one"
        ) from None
    known = {v.name: v.type for v in (*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input)}
    image_max = image_total = 0
    const_sizes = [_declared_bytes(t) for t in g.initializer]
    for node in inferred.graph.node:
        for out in node.output:
            if not out:
                continue
            per_image, const = _sized(known.get(out), out, node.op_type, where)
            if per_image is not None:
                image_max, image_total = max(image_max, per_image), image_total + per_image
            else:
                const_sizes.append(const)
    bounds = OnnxBounds(file_bytes, image_max, image_total, max(const_sizes, default=0), sum(const_sizes))
    _enforce(bounds, where)
    return bounds


def _enforce(b: OnnxBounds, where: str) -> None:
    const_one = CONST_TENSOR_FACTOR * b.file_bytes + CONST_SLACK_BYTES
    const_all = CONST_TOTAL_FACTOR * b.file_bytes + CONST_SLACK_BYTES
    fix = "binexport runs WRN classifiers; this graph asks for far more memory than one needs"
    if b.image_tensor_bytes > MAX_IMAGE_TENSOR_BYTES:
        raise InputError(
            f"{where}: one tensor takes {_mib(b.image_tensor_bytes)} per image, more than the "
            f"{_mib(MAX_IMAGE_TENSOR_BYTES)} allowed; {fix}"
        )
    image_all = IMAGE_TOTAL_FACTOR * b.file_bytes + IMAGE_TOTAL_SLACK_BYTES
    if b.image_total_bytes > image_all:
        raise InputError(
            f"{where}: its tensors take {_mib(b.image_total_bytes)} per image together, more than the "
            f"{_mib(image_all)} a {b.file_bytes:,}-byte file may make ({IMAGE_TOTAL_FACTOR}x its size + "
            f"{_mib(IMAGE_TOTAL_SLACK_BYTES)}); {fix}"
        )
    if b.const_tensor_bytes > const_one:
        raise InputError(
            f"{where}: one constant tensor takes {_mib(b.const_tensor_bytes)}, more than the "
            f"{_mib(const_one)} a {b.file_bytes:,}-byte file may make ({CONST_TENSOR_FACTOR}x its size "
            f"+ {_mib(CONST_SLACK_BYTES)}); {fix}"
        )
    if b.const_total_bytes > const_all:
        raise InputError(
            f"{where}: its constant tensors take {_mib(b.const_total_bytes)} together, more than the "
            f"{_mib(const_all)} a {b.file_bytes:,}-byte file may make ({CONST_TOTAL_FACTOR}x its size "
            f"+ {_mib(CONST_SLACK_BYTES)}); {fix}"
        )


def _check_node(node: Any, where: str) -> None:
    """Standard operators only, no subgraphs, and any tensor attribute holding what it declares."""
    what = f"node {node.name or node.op_type!r} ({node.op_type})"
    if node.domain not in _STANDARD_DOMAINS:
        raise InputError(
            f"{where}: {what} is in operator domain {node.domain[:60]!r}; binexport runs standard "
            "ONNX operators only (custom operators can't be sized before they run)"
        )
    for a in node.attribute:
        if a.type in (5, 10) or a.HasField("g") or len(a.graphs):  # GRAPH, GRAPHS
            raise InputError(
                f"{where}: {what} has a subgraph (attribute {a.name!r}); binexport runs graphs without "
                "If/Loop/Scan bodies, whose sizes can't be checked before they run"
            )
        if a.type in (11, 12) or a.HasField("sparse_tensor") or len(a.sparse_tensors):  # SPARSE_TENSOR(S)
            raise InputError(
                f"{where}: {what} has a sparse tensor attribute {a.name!r}, whose dense size is not "
                "in the file; expected dense tensors"
            )
        if a.HasField("t"):
            _check_tensor(a.t, f"{what} attribute {a.name!r}", where)
        for t in a.tensors:
            _check_tensor(t, f"{what} attribute {a.name!r}", where)


def _check_tensor(t: Any, what: str, where: str) -> None:
    """A tensor in the file holds exactly the bytes its dims and type declare, in the file itself."""
    if t.data_location == 1 or len(t.external_data):
        raise InputError(
            f"{where}: {what} keeps its data in an external file; binexport reads self-contained "
            "ONNX files only (save the model without external data)"
        )
    if t.data_type in _PER_BYTE and not len(t.int32_data):  # raw_data only: ceil(n / per byte) bytes
        n, per = _prod(t.dims), _PER_BYTE[t.data_type]
        if len(t.raw_data) != -(-n // per) or any(d < 0 for d in t.dims):
            raise InputError(
                f"{where}: {what} declares shape {list(t.dims)[:8]} ({-(-n // per):,} bytes) but holds "
                f"{len(t.raw_data):,}; the file is corrupt or crafted"
            )
        return
    if t.data_type not in _ITEMSIZE:
        raise InputError(
            f"{where}: {what} has element type {t.data_type}; expected a plain numeric type "
            "(float, float16, bfloat16, double, (u)int8..64, bool)"
        )
    if any(d < 0 for d in t.dims):
        raise InputError(f"{where}: {what} declares a negative dimension {list(t.dims)[:8]}")
    n = _prod(t.dims)
    if t.raw_data:
        have, need = len(t.raw_data), n * _ITEMSIZE[t.data_type]
    else:
        have, need = len(getattr(t, _FIELD[t.data_type])), n
    if have != need:
        unit = "bytes" if t.raw_data else "values"
        raise InputError(
            f"{where}: {what} declares shape {list(t.dims)[:8]} ({need:,} {unit}) but holds {have:,}; "
            "the file is corrupt or crafted"
        )


def _strip_large_values(g: Any) -> None:
    """Large initializers keep their dims and type, not their values: inference needs no more, and copying
    a 100 MB graph for it would double the memory this check takes."""
    for t in g.initializer:
        if _declared_bytes(t) > _VALUE_FREE_BYTES:
            for name in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
                t.ClearField(name)


def _sized(tp: Any, name: str, op: str, where: str) -> tuple[int | None, int]:
    """(bytes per image, None) for a tensor with the batch dimension, (None, bytes) for a constant."""
    if tp is None or not tp.HasField("tensor_type") or not tp.tensor_type.HasField("shape"):
        raise InputError(
            f"{where}: the shape of {op} output {name[:60]!r} can't be inferred; binexport sizes every "
            "tensor before running a graph (shapes must follow from the file)"
        )
    tt = tp.tensor_type
    size = _ITEMSIZE.get(tt.elem_type)
    if size is None:
        raise InputError(
            f"{where}: {op} output {name[:60]!r} has element type {tt.elem_type}; expected a plain numeric type"
        )
    batch, n = 0, size
    for d in tt.shape.dim:
        if d.HasField("dim_value") and d.dim_value >= 0:
            n *= d.dim_value
        elif d.dim_param == _BATCH:
            batch += 1
        else:
            raise InputError(
                f"{where}: the shape of {op} output {name[:60]!r} is not fully known "
                f"({_shape_text(tt.shape)}); binexport sizes every tensor before running a graph "
                "(shapes must follow from the file and the batch)"
            )
    if batch > 1:
        raise InputError(
            f"{where}: {op} output {name[:60]!r} grows with the square of the batch "
            f"({_shape_text(tt.shape)}); expected tensors linear in the batch"
        )
    return (n, 0) if batch else (None, n)


def _declared_bytes(t: Any) -> int:
    if t.data_type in _PER_BYTE:
        return -(-_prod(t.dims) // _PER_BYTE[t.data_type])
    return _prod(t.dims) * _ITEMSIZE.get(t.data_type, 1)


def _prod(dims: Any) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


def _shape_text(shape: Any) -> str:
    dims = [
        str(d.dim_value) if d.HasField("dim_value") else ("N" if d.dim_param == _BATCH else (d.dim_param[:20] or "?"))
        for d in shape.dim
    ]
    return "(" + ", ".join(dims[:8]) + (", ..." if len(dims) > 8 else "") + ")"


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:160]


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"
