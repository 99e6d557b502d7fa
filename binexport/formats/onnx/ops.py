"""What an untrusted ONNX graph may be made of: which operators, how many, how deep, and what goes in and out.

:mod:`.bounds` sizes every tensor a graph declares; these rules bound what it does not declare:

- **Operators**: only :data:`ALLOWED_OPS`, the operators binexport's own graphs (float32, float16, 1-bit, int8
  QDQ, int2) and a WRN exported by another tool (``torch.onnx`` of the port, pytorchcv) use. Each either
  allocates no more than its declared output or, for a convolution, an im2col workspace that
  :func:`workspace_bytes` sizes from its shapes. ConvTranspose (its column buffer is ``C x K^2`` times the
  input: 1.2-2.5 GB from a few-KB graph), Attention (materialises ``S x S`` scores), recurrent cells,
  Einsum, TopK and the rest are refused by name.
- **Graph size**: at most :data:`MAX_NODES` nodes and :data:`MAX_GRAPH_DEPTH` nodes on the longest path.
  binexport's int8 graph of a WRN-d has about 9.5 d nodes and a longest path of 5 d (1-bit: 6.6 d and
  3.6 d); a WRN-200 exported by a tool twice as verbose fits. OpenVINO's compile time grows faster than
  linearly with depth (a 5,000-node chain compiles in 5 s, 20,000 in 63 s here) and a 100,000-node graph
  crashes it.
- **Inputs and outputs**: one image input, ``(N, 3, 32, 32)`` float32/float16 or ``(N, 32, 32, 3)`` uint8
  (:data:`binexport.runtimes.INPUT_KINDS`), and every output ``(N, classes)``: a scalar output, or one that
  is not per image, is refused before a runtime runs it.
"""

from __future__ import annotations

from typing import Any

from binexport.errors import InputError

#: The operators an untrusted graph may use (standard domain). binexport's own graphs use Add, AveragePool,
#: BatchNormalization, Cast, Concat, Conv, DequantizeLinear, Div, Flatten, Gather, GlobalAveragePool, Mul,
#: QuantizeLinear, Relu, Reshape, Sub, Transpose (int2: ReduceMin too; ScatterND where a 1-bit weight has exact
#: zeros); the rest are what other exporters of a
#: WRN emit (Pad, Gemm, MatMul, QLinearConv, shape arithmetic, ...), each bounded by its declared output.
ALLOWED_OPS: frozenset[str] = frozenset(
    {
        # the network
        "Conv",
        "ConvInteger",
        "QLinearConv",
        "BatchNormalization",
        "Relu",
        "LeakyRelu",
        "PRelu",
        "Clip",
        "AveragePool",
        "MaxPool",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "Gemm",
        "MatMul",
        "MatMulInteger",
        "QLinearMatMul",
        "Softmax",
        "LogSoftmax",
        "Dropout",
        # quantisation
        "QuantizeLinear",
        "DequantizeLinear",
        # element-wise arithmetic and logic
        "Add",
        "ScatterND",  # the exact-zero latent weights of a 1-bit weight (FORMAT.md 4.2), on constants
        "Sub",
        "Mul",
        "Div",
        "Sum",
        "Neg",
        "Abs",
        "Sign",
        "Sqrt",
        "Reciprocal",
        "Pow",
        "Min",
        "Max",
        "Where",
        "Less",
        "LessOrEqual",
        "Greater",
        "GreaterOrEqual",
        "Equal",
        "Not",
        "And",
        "Or",
        "Cast",
        "CastLike",
        # reductions
        "ReduceMean",
        "ReduceSum",
        "ReduceMax",
        "ReduceMin",
        # shapes and data movement
        "Flatten",
        "Reshape",
        "Transpose",
        "Concat",
        "Split",
        "Slice",
        "Gather",
        "Pad",
        "Squeeze",
        "Unsqueeze",
        "Shape",
        "Size",
        "Identity",
        "Constant",
        "ConstantOfShape",
        "Expand",
    }
)
#: The most nodes a graph may have: a WRN-200 in binexport's int8 graph (about 9.5 nodes per layer, 1,900)
#: twice over, for exporters that spell out shape arithmetic.
MAX_NODES = 4096
#: The most nodes on the longest input-to-output path (binexport's int8 graph: about 5 per layer).
MAX_GRAPH_DEPTH = 2048
#: The largest scratch buffer one operator may need per call: a convolution's im2col columns
#: (input channels per group x kernel x output pixels, float32). WRN-20-10's widest 3x3 conv needs 5.6 MiB;
#: a WRN of 1,024 channels 36 MiB.
MAX_WORKSPACE_BYTES = 64 << 20
#: The most classes an output may have (ImageNet-21k has 21,841).
MAX_CLASSES = 1 << 16
#: Element types an image input may have, with the per-image shape each takes: float32 and float16 NCHW,
#: uint8 NHWC (ONNX TensorProto.DataType codes).
IMAGE_INPUTS = {1: (3, 32, 32), 10: (3, 32, 32), 2: (32, 32, 3)}
_CONVS = ("Conv", "ConvInteger", "QLinearConv")


def check_graph_size(g: Any, where: str) -> None:
    """At most :data:`MAX_NODES` nodes, of :data:`ALLOWED_OPS` only, at most :data:`MAX_GRAPH_DEPTH` deep.

    Raises:
        InputError: too many nodes, an operator not in the list, or too long a path.
    """
    if len(g.node) > MAX_NODES:
        raise InputError(
            f"{where}: the graph has {len(g.node):,} nodes, more than the {MAX_NODES:,} a WRN can need; "
            "binexport runs WRN classifiers (see docs/safety.md)"
        )
    for node in g.node:
        if node.domain in ("", "ai.onnx") and node.op_type not in ALLOWED_OPS:
            raise InputError(
                f"{where}: operator {node.op_type[:60]!r} is not one binexport runs; allowed: "
                f"{', '.join(sorted(ALLOWED_OPS))} (docs/safety.md)"
            )
    depth = graph_depth(g)
    if depth > MAX_GRAPH_DEPTH:
        raise InputError(
            f"{where}: the graph is {depth:,} nodes deep, more than the {MAX_GRAPH_DEPTH:,} a WRN can need; "
            "binexport runs WRN classifiers (see docs/safety.md)"
        )


def graph_depth(g: Any) -> int:
    """Nodes on the longest path, in the graph's (topological) node order; an input not yet made counts 0."""
    level: dict[str, int] = {}
    deepest = 0
    for node in g.node:
        d = 1 + max((level.get(i, 0) for i in node.input if i), default=0)
        for o in node.output:
            level[o] = d
        deepest = max(deepest, d)
    return deepest


def check_image_input(inp: Any, where: str) -> None:
    """The one graph input is an image batch of a documented kind: (N, 3, 32, 32) float32/float16 or
    (N, 32, 32, 3) uint8, N free or fixed.

    Raises:
        InputError: another element type, rank or image shape.
    """
    tt = inp.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    want = IMAGE_INPUTS.get(tt.elem_type)
    if want is None or len(dims) != 4 or tuple(dims[1:]) != want:
        shown = "(" + ", ".join("?" if d is None else str(d) for d in dims[:8]) + ")"
        raise InputError(
            f"{where}: the graph input {inp.name[:60]!r} is element type {tt.elem_type} of shape {shown}; "
            "expected an image batch: (N, 3, 32, 32) float32 or float16, or (N, 32, 32, 3) uint8"
        )


def check_outputs(outputs: Any, batch: str, where: str) -> None:
    """Every graph output is logits: (N, classes), N the batch, 1..:data:`MAX_CLASSES` classes.

    Raises:
        InputError: an output of another rank (a scalar, ...), not per image, or with too many classes.
    """
    for out in outputs:
        dims = list(out.type.tensor_type.shape.dim)
        ok = (
            len(dims) == 2
            and dims[0].dim_param == batch
            and dims[1].HasField("dim_value")
            and 1 <= dims[1].dim_value <= MAX_CLASSES
        )
        if not ok:
            shown = "(" + ", ".join("N" if d.dim_param == batch else str(d.dim_value) for d in dims[:8]) + ")"
            raise InputError(
                f"{where}: the graph output {out.name[:60]!r} has shape {shown}; expected logits of shape "
                f"(N, classes), one row per image, at most {MAX_CLASSES:,} classes"
            )


def workspace_bytes(node: Any, known: dict[str, Any]) -> int:
    """Bytes of scratch ``node`` needs beyond its declared output, per call: a convolution's im2col buffer
    (input channels per group x kernel size x output pixels, as float32), 0 for every other allowed op."""
    if node.op_type not in _CONVS:
        return 0
    w_name = node.input[3] if node.op_type == "QLinearConv" else node.input[1]
    w, y = known.get(w_name), known.get(node.output[0])
    if w is None or y is None:
        return 0  # the caller has already refused a tensor without a known shape
    kernel = [d.dim_value for d in w.tensor_type.shape.dim]
    out = [d.dim_value for d in y.tensor_type.shape.dim]
    n = 4
    for d in kernel[1:] + out[2:]:  # C/group x k1 x k2 ... x H' x W' ...
        n *= max(int(d), 1)
    return n


def check_workspace(node: Any, n: int, where: str) -> None:
    """Refuse a node whose scratch (:func:`workspace_bytes`) passes :data:`MAX_WORKSPACE_BYTES`."""
    if n > MAX_WORKSPACE_BYTES:
        raise InputError(
            f"{where}: {node.op_type} node {(node.name or node.output[0])[:60]!r} needs {n / 2**20:,.1f} MiB of "
            f"scratch per image (im2col: input channels x kernel x output pixels), more than the "
            f"{MAX_WORKSPACE_BYTES >> 20} MiB a WRN's widest convolution needs; binexport runs WRN classifiers"
        )
