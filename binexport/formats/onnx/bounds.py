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
- (:mod:`.tensors` sizes and checks each tensor)
- only the operators of :data:`.ops.ALLOWED_OPS`, at most :data:`.ops.MAX_NODES`
  nodes and :data:`.ops.MAX_GRAPH_DEPTH` deep, one image input of a documented
  kind and every output (N, classes) (:mod:`.ops`);
- the allowances grow with the weights W the graph holds (the declared bytes of
  the initializers and Constant tensors its nodes use), not with the file's
  length: padding, metadata and unused initializers buy nothing;
- a tensor with the batch dimension is an activation: at most
  :data:`MAX_IMAGE_TENSOR_BYTES` per image, all of them together at most
  ``min(IMAGE_TOTAL_FACTOR x W + IMAGE_TOTAL_SLACK_BYTES, MAX_IMAGE_TOTAL_BYTES)`` per image;
- a tensor without it is a constant (weights, the 1-bit graphs' float weights
  expanded at session start, shapes): each at most
  ``CONST_TENSOR_FACTOR x W + CONST_SLACK_BYTES``, all of them together
  at most ``min(CONST_TOTAL_FACTOR x W + CONST_SLACK_BYTES, MAX_CONST_TOTAL_BYTES)``;
- a convolution's im2col scratch is at most :data:`.ops.MAX_WORKSPACE_BYTES`.

Every graph binexport writes passes (float32, float16, 1-bit, int8 QDQ,
``--normalize-inside``, McDonnell's variants): WRN-20-10, the widest model in
use, has activations of at most 640 KiB per image and 26-29 MiB per image in
all (7-9x its 1-bit file; 2.6 MiB for WRN-20-1); a 1-bit graph's expanded float
weights are 32x their packed bytes (its largest constant is 4x the whole file)
and all its constants together 62-67x the file. So memory at batch B is at most
``const_total + workspace + B x image_total`` (:meth:`OnnxBounds.peak_bound`):
for a graph without weights 16 MiB + 64 MiB + B x 8 MiB, whatever the graph says.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from binexport.errors import InputError
from binexport.formats.onnx import ops, tensors

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
#: Whatever the weights, every activation together per image stays under this (WRN-20-10: 29 MiB; WRN-40-10
#: about 2x that): a graph holding 100 MB of weights is not allowed 6 GiB per image.
MAX_IMAGE_TOTAL_BYTES = 128 << 20
#: ... and every constant together under this (a float32 WRN-40-10 holds 220 MB; the .bwn reader's cap is 4 GiB).
MAX_CONST_TOTAL_BYTES = 2 << 30
#: Initializers above this many bytes are sized from their dims alone; shape inference never needs their values.
_VALUE_FREE_BYTES = 4096


@dataclass(frozen=True)
class OnnxBounds:
    """What a graph passed with: its largest tensors, per image and constant, in bytes."""

    file_bytes: int
    image_tensor_bytes: int  # the largest activation, per image
    image_total_bytes: int  # every activation together, per image
    const_tensor_bytes: int  # the largest constant
    const_total_bytes: int  # every constant together
    weight_bytes: int = 0  # what the allowances grow with: the initializers and Constant tensors nodes use
    workspace_bytes: int = 0  # the largest operator scratch (a convolution's im2col columns)
    nodes: int = 0
    depth: int = 0  # nodes on the longest path

    def peak_bound(self, batch: int) -> int:
        """Bytes every tensor together may take at ``batch`` images: what the checks guarantee, at most."""
        return self.const_total_bytes + self.workspace_bytes + batch * self.image_total_bytes


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
    if len(g.node) > ops.MAX_NODES:  # before anything walks them
        ops.check_graph_size(g, where)
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
        tensors.check_tensor(t, f"initializer {t.name!r}", where)
    for node in g.node:
        tensors.check_node(node, where)
    ops.check_graph_size(g, where)
    weights = {t.name for t in g.initializer}  # IR < 4 lists initializers among the inputs too
    images = [i for i in g.input if i.name not in weights]
    if len(images) != 1 or not g.output:
        raise InputError(
            f"{where}: the graph has {len(images)} inputs and {len(g.output)} outputs; a WRN classifier "
            "takes one image batch and gives logits"
        )
    ops.check_image_input(images[0], where)
    weight_bytes = _weight_bytes(g)
    tensors.strip_large_values(g, _VALUE_FREE_BYTES)
    dim0 = images[0].type.tensor_type.shape.dim[0]
    dim0.Clear()
    dim0.dim_param = tensors.BATCH  # a fixed batch too: its tensors are sized per image like the others
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
    for t in g.initializer:
        known.setdefault(t.name, _initializer_type(t))
    image_max = image_total = scratch = 0
    const_sizes = [tensors.declared_bytes(t) for t in g.initializer]
    for node in inferred.graph.node:
        for out in node.output:
            if not out:
                continue
            per_image, const = tensors.sized(known.get(out), out, node.op_type, where)
            if per_image is not None:
                image_max, image_total = max(image_max, per_image), image_total + per_image
            else:
                const_sizes.append(const)
        work = ops.workspace_bytes(node, known)
        ops.check_workspace(node, work, where)
        scratch = max(scratch, work)
    ops.check_outputs(inferred.graph.output, tensors.BATCH, where)
    bounds = OnnxBounds(
        file_bytes,
        image_max,
        image_total,
        max(const_sizes, default=0),
        sum(const_sizes),
        weight_bytes,
        scratch,
        len(g.node),
        ops.graph_depth(g),
    )
    _enforce(bounds, where)
    return bounds


def allowances(weight_bytes: int) -> tuple[int, int, int]:
    """(all activations per image, one constant, all constants) a graph holding ``weight_bytes`` may make."""
    image_all = min(IMAGE_TOTAL_FACTOR * weight_bytes + IMAGE_TOTAL_SLACK_BYTES, MAX_IMAGE_TOTAL_BYTES)
    const_one = CONST_TENSOR_FACTOR * weight_bytes + CONST_SLACK_BYTES
    const_all = min(CONST_TOTAL_FACTOR * weight_bytes + CONST_SLACK_BYTES, MAX_CONST_TOTAL_BYTES)
    return image_all, const_one, const_all


def _weight_bytes(g: Any) -> int:
    """Declared bytes of the initializers and Constant tensors a node or output uses: what a graph holds."""
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    n = sum(tensors.declared_bytes(t) for t in g.initializer if t.name in used)
    for node in g.node:
        if node.op_type == "Constant":
            n += sum(tensors.declared_bytes(a.t) for a in node.attribute if a.HasField("t"))
    return n


def _initializer_type(t: Any) -> Any:
    """An initializer's type as a TypeProto (what inference gives node outputs), for :func:`ops.workspace_bytes`."""
    import onnx

    return onnx.helper.make_tensor_type_proto(t.data_type, list(t.dims))


def _enforce(b: OnnxBounds, where: str) -> None:
    image_all, const_one, const_all = allowances(b.weight_bytes)
    held = f"a graph holding {b.weight_bytes:,} bytes of weights"
    fix = "binexport runs WRN classifiers; this graph asks for far more memory than one needs"
    if b.image_tensor_bytes > MAX_IMAGE_TENSOR_BYTES:
        raise InputError(
            f"{where}: one tensor takes {_mib(b.image_tensor_bytes)} per image, more than the "
            f"{_mib(MAX_IMAGE_TENSOR_BYTES)} allowed; {fix}"
        )
    if b.image_total_bytes > image_all:
        raise InputError(
            f"{where}: its tensors take {_mib(b.image_total_bytes)} per image together, more than the "
            f"{_mib(image_all)} {held} may make ({IMAGE_TOTAL_FACTOR}x them + "
            f"{_mib(IMAGE_TOTAL_SLACK_BYTES)}, at most {_mib(MAX_IMAGE_TOTAL_BYTES)}); {fix}"
        )
    if b.const_tensor_bytes > const_one:
        raise InputError(
            f"{where}: one constant tensor takes {_mib(b.const_tensor_bytes)}, more than the "
            f"{_mib(const_one)} {held} may make ({CONST_TENSOR_FACTOR}x them + {_mib(CONST_SLACK_BYTES)}); {fix}"
        )
    if b.const_total_bytes > const_all:
        raise InputError(
            f"{where}: its constant tensors take {_mib(b.const_total_bytes)} together, more than the "
            f"{_mib(const_all)} {held} may make ({CONST_TOTAL_FACTOR}x them + {_mib(CONST_SLACK_BYTES)}, "
            f"at most {_mib(MAX_CONST_TOTAL_BYTES)}); {fix}"
        )


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:160]


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"
