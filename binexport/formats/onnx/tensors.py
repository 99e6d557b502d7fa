"""What one tensor of an untrusted ONNX graph holds and takes: element sizes, declared bytes, inferred shapes.

:mod:`.bounds` walks the graph and adds these sizes up against its allowances; :mod:`.ops` bounds what a graph
does not declare. Everything here reads one tensor (or one node's attributes) and either sizes it or refuses it
with a one-line :class:`~binexport.errors.InputError`.
"""

from __future__ import annotations

from typing import Any

from binexport.errors import InputError

#: The batch symbol the graph input's first dimension is given for inference.
BATCH = "__binexport_batch__"
#: Plain numeric element types: ONNX TensorProto.DataType -> bytes per element.
ITEMSIZE = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}
#: Sub-byte integer types (UINT4, INT4, UINT2, INT2: int2 and int4 weights), packed: bits per element.
SUBBYTE_BITS = {21: 4, 22: 4, 25: 2, 26: 2}
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
    21: "int32_data",
    22: "int32_data",
    25: "int32_data",
    26: "int32_data",
}
_STANDARD_DOMAINS = ("", "ai.onnx")


def check_node(node: Any, where: str) -> None:
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
            check_tensor(a.t, f"{what} attribute {a.name!r}", where)
        for t in a.tensors:
            check_tensor(t, f"{what} attribute {a.name!r}", where)


def check_tensor(t: Any, what: str, where: str) -> None:
    """A tensor in the file holds exactly the bytes its dims and type declare, in the file itself."""
    if t.data_location == 1 or len(t.external_data):
        raise InputError(
            f"{where}: {what} keeps its data in an external file; binexport reads self-contained "
            "ONNX files only (save the model without external data)"
        )
    if t.data_type not in ITEMSIZE and t.data_type not in SUBBYTE_BITS:
        raise InputError(
            f"{where}: {what} has element type {t.data_type}; expected a plain numeric type "
            "(float, float16, bfloat16, double, (u)int2..64, bool)"
        )
    if any(d < 0 for d in t.dims):
        raise InputError(f"{where}: {what} declares a negative dimension {list(t.dims)[:8]}")
    n = prod(t.dims)
    if t.data_type in SUBBYTE_BITS:  # packed: raw bytes or int32_data entries, one packed byte each
        have, need = len(t.raw_data) if t.raw_data else len(t.int32_data), declared_bytes(t)
    elif t.raw_data:
        have, need = len(t.raw_data), n * ITEMSIZE[t.data_type]
    else:
        have, need = len(getattr(t, _FIELD[t.data_type])), n
    if have != need:
        unit = "bytes" if t.raw_data else "values"
        raise InputError(
            f"{where}: {what} declares shape {list(t.dims)[:8]} ({need:,} {unit}) but holds {have:,}; "
            "the file is corrupt or crafted"
        )


def strip_large_values(g: Any, keep_bytes: int) -> None:
    """Large initializers keep their dims and type, not their values: inference needs no more, and copying
    a 100 MB graph for it would double the memory this check takes."""
    for t in g.initializer:
        if declared_bytes(t) > keep_bytes:
            for name in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
                t.ClearField(name)


def sized(tp: Any, name: str, op: str, where: str) -> tuple[int | None, int]:
    """(bytes per image, None) for a tensor with the batch dimension, (None, bytes) for a constant."""
    if tp is None or not tp.HasField("tensor_type") or not tp.tensor_type.HasField("shape"):
        raise InputError(
            f"{where}: the shape of {op} output {name[:60]!r} can't be inferred; binexport sizes every "
            "tensor before running a graph (shapes must follow from the file)"
        )
    tt = tp.tensor_type
    size = ITEMSIZE.get(tt.elem_type, 1 if tt.elem_type in SUBBYTE_BITS else None)  # sub-byte: a byte each, at most
    if size is None:
        raise InputError(
            f"{where}: {op} output {name[:60]!r} has element type {tt.elem_type}; expected a plain numeric type"
        )
    batch, n = 0, size
    for d in tt.shape.dim:
        if d.HasField("dim_value") and d.dim_value >= 0:
            n *= d.dim_value
        elif d.dim_param == BATCH:
            batch += 1
        else:
            raise InputError(
                f"{where}: the shape of {op} output {name[:60]!r} is not fully known "
                f"({shape_text(tt.shape)}); binexport sizes every tensor before running a graph "
                "(shapes must follow from the file and the batch)"
            )
    if batch > 1:
        raise InputError(
            f"{where}: {op} output {name[:60]!r} grows with the square of the batch "
            f"({shape_text(tt.shape)}); expected tensors linear in the batch"
        )
    return (n, 0) if batch else (None, n)


def declared_bytes(t: Any) -> int:
    if t.data_type in SUBBYTE_BITS:
        return -(-prod(t.dims) * SUBBYTE_BITS[t.data_type] // 8)
    return prod(t.dims) * ITEMSIZE.get(t.data_type, 1)


def prod(dims: Any) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


def shape_text(shape: Any) -> str:
    dims = [
        str(d.dim_value) if d.HasField("dim_value") else ("N" if d.dim_param == BATCH else (d.dim_param[:20] or "?"))
        for d in shape.dim
    ]
    return "(" + ", ".join(dims[:8]) + (", ..." if len(dims) > 8 else "") + ")"
