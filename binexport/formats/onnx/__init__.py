"""ONNX graphs built straight from the in-memory model with ``onnx.helper``: no torch, no custom ops.

Building the graph by hand (instead of ``torch.onnx``) keeps each block conv's
weight a graph input of its own Conv: the torch exporters fold the BatchNorm
that follows a conv into its weight, after which a binarised weight is no
longer +-scale and can't be stored as bits. ``weights="1-bit"`` keeps every
binarised conv at one bit per weight: the sign bits of the flattened
(out, in, 3, 3) weight are ``np.packbits``-ed into a uint8 initializer and one
Gather from a shared (256, 8) table of +-scale turns each byte into 8 weights.
ONNX Runtime constant-folds that at session start; see docs/BENCHMARKS.md for
why this design beat a BitShift chain and a 9-bit kernel lookup table.

This module is the format's face: the registry's ``sniff`` / ``write``, the
options and their checks, the metadata, and the walk that assembles a graph.
The pieces (BN, downsample, normalisation, the sign-bit expansion) live in
:mod:`binexport.formats.onnx.graph`, shared with :mod:`int8` and :mod:`designs`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np

from binexport import __version__
from binexport.errors import InputError
from binexport.formats.onnx import int8
from binexport.formats.onnx.graph import (
    Graph,
    Packer,
    bn,
    downsample,
    normalize,
    onnx_pads,
    pack_lut8,
    to_nchw,
)
from binexport.model import Model, input_normalization

#: Weight encodings of ``--weights`` (``1-bit``: sign bits turned into +-scale when the session starts;
#: ``int8``: QDQ graph, calibrated activations, 1-bit weights still stored as bits; ``int2``: opset-25 INT2
#: weights that stay packed in the session's memory too, float activations, exact: ``formats/onnx/int2.py``).
WEIGHTS = ("1-bit", "float32", "float16", "int8", "int2")
#: Old names still accepted (binexport 0.1 called ``1-bit`` ``packed``).
WEIGHT_ALIASES = {"packed": "1-bit"}
MIN_OPSET = 13
#: Largest fixed batch: validation pads its 4 images to the batch (WRN-20-10 at 4096 images needs ~3 GiB per
#: activation already; 10,000,000 would be 114 GiB). Larger batches gain nothing on any GPU binexport targets.
MAX_FIXED_BATCH = 4096
DEFAULT_OPSET = 18
#: The default opset of each weight encoding that needs a newer one than :data:`DEFAULT_OPSET` (INT2: opset 25).
WEIGHTS_OPSET = {"int2": 25}
INPUT_NAME = "input"
OUTPUT_NAME = "logits"

# ModelProto fields in the order SerializeToString writes them: ir_version (field 1, varint) comes
# first, followed by producer_name/version, domain, model_version, doc_string, graph or opset_import.
_SECOND_TAGS = {0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72}


def sniff(head: bytes) -> bool:
    """A serialized ModelProto: tag 0x08, a small ir_version, then another top-level field tag."""
    return len(head) >= 3 and head[0] == 0x08 and 3 <= head[1] <= 30 and head[2] in _SECOND_TAGS


def write(model: Model, **options: Any) -> bytes:
    """The serialized ONNX model; options as ``build_model``."""
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise InputError(f"the 'onnx' format has no option {', '.join(unknown)}; valid: {', '.join(sorted(_OPTIONS))}")
    return build_model(model, **options).SerializeToString()


_OPTIONS = {
    "weights",
    "opset",
    "batch",
    "normalize_inside",
    "source_sha256",
    "int8_ranges",
    "int8_info",
    "int8_weight_zero_point",
}


def default_weights(model: Model) -> str:
    """``1-bit`` for a binarised model, ``float32`` for a full-precision one."""
    return "1-bit" if model.binarized else "float32"


def input_kind(weights: str, normalize_inside: bool, pixels: bool = False, normalization: str = "") -> str:
    """The ``binexport.input`` metadata value: what the graph input holds.

    ``pixels``: the model normalises with its own input BN (McDonnell's), so its float input is raw 0..255
    pixels (``float32-nchw-pixels``), not ``(pixel / 255 - mean) / std``. ``normalization``: whose mean/std
    made the normalised input where not the SPEC's (``Arch.normalization``: ``pytorchcv`` gives
    ``float32-nchw-normalized-pytorchcv``).
    """
    if normalize_inside:
        return "uint8-nhwc"
    what = "pixels" if pixels else "normalized" + (f"-{normalization}" if normalization else "")
    return f"float16-nchw-{what}" if weights == "float16" else f"float32-nchw-{what}"


def check_options(
    model: Model, weights: str | None = None, opset: int | None = None, batch: str | int = "dynamic"
) -> tuple[str, int, str | int]:
    """Resolved (weights, opset, batch), or an InputError that says which values are valid.

    ``opset`` None: :data:`DEFAULT_OPSET`, or the encoding's own in :data:`WEIGHTS_OPSET`.
    """
    weights = WEIGHT_ALIASES.get(weights or "", weights) or default_weights(model)
    if weights not in WEIGHTS:
        raise InputError(f"unknown weight encoding {weights!r}; valid: {', '.join(WEIGHTS)}")
    if weights == "1-bit" and not model.binarized:
        raise InputError(
            f"{model.arch.name} is a full-precision model: its block convs are not sign bits, so "
            "'1-bit' would change its outputs; export it with --weights float32 or float16"
        )
    import onnx

    opset = WEIGHTS_OPSET.get(weights, DEFAULT_OPSET) if opset is None else opset
    top = onnx.defs.onnx_opset_version()
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= top:
        raise InputError(f"opset {opset!r} is not supported; use {MIN_OPSET}..{top} (default {DEFAULT_OPSET})")
    if batch != "dynamic":
        try:
            batch = int(batch)
        except (TypeError, ValueError, OverflowError):
            raise InputError(f"batch must be 'dynamic' or a positive integer, got {str(batch)[:40]!r}") from None
        if not 1 <= batch <= MAX_FIXED_BATCH:
            raise InputError(
                f"batch must be 'dynamic' or a fixed batch of 1..{MAX_FIXED_BATCH} images, got {str(batch)[:40]}"
            )
    if weights == "int2":
        from binexport.formats.onnx import int2

        int2.check(model, opset)
    return weights, opset, batch


def build_model(
    model: Model,
    weights: str | None = None,
    opset: int | None = None,
    batch: str | int = "dynamic",
    normalize_inside: bool = False,
    source_sha256: str | None = None,
    int8_ranges: dict[str, tuple[float, float]] | None = None,
    int8_info: dict[str, Any] | None = None,
    int8_weight_zero_point: int | None = None,
    _packer: Packer | None = None,
) -> Any:
    """The ModelProto of ``WRN_McDonnell`` per the SPEC (in the model's variant), input and logits as the metadata says.

    A model with an input BN (McDonnell's) takes raw 0..255 pixels: float NCHW, or uint8 NHWC with
    ``normalize_inside`` (then the graph only casts and transposes before its input BN). Its 1-bit conv0 and
    head stay 1-bit in the file for ``1-bit`` and ``int8`` and are computed in float.

    float16 stores weights and computes in half precision: float16 NCHW in, float16 logits out
    (uint8 NHWC in with ``normalize_inside``). float32, 1-bit and int8 take float32 and give float32.
    int8 needs ``int8_ranges``: the calibrated (low, high) of every activation
    :func:`binexport.formats.onnx.int8.required_ranges` names; ``int8_info`` (how they were calibrated) is
    recorded in the ``binexport.int8`` metadata, with ``int8_weight_zero_point`` (one of
    :data:`binexport.formats.onnx.int8.WEIGHT_ZERO_POINTS`; None: the default), which picks ONNX Runtime's kernel.
    """
    import onnx
    from onnx import helper

    weights, opset, batch = check_options(model, weights, opset, batch)
    dtype = np.float16 if weights == "float16" else np.float32
    g = Graph(dtype)
    packer = _packer or pack_lut8
    n = "N" if batch == "dynamic" else batch
    elem = onnx.TensorProto.FLOAT16 if weights == "float16" else onnx.TensorProto.FLOAT
    arch = model.arch
    if normalize_inside:
        inp = helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.UINT8, [n, 32, 32, 3])
        h = to_nchw(g, INPUT_NAME) if arch.input_bn else normalize(g, INPUT_NAME, arch)
    else:
        inp = helper.make_tensor_value_info(INPUT_NAME, elem, [n, 3, 32, 32])
        h = INPUT_NAME
    if arch.input_bn:
        h = bn(g, model, h, "input_bn", relu=arch.input_relu)

    def weight(name: str) -> str:
        if weights == "1-bit":
            return packer(g, name, model.binary[name], dtype)
        return g.const(name, model.dense(name).astype(dtype))

    def outer(name: str) -> str:
        """conv0 / conv_last: float, or sign bits expanded at session start where the file keeps 1 bit."""
        if name in model.binary and weights == "int2":  # h is, at the call, this conv's input
            from binexport.formats.onnx import int2

            return int2.weight(g, name, model.binary[name], h)
        if name in model.binary and weights in ("1-bit", "int8"):
            return packer(g, name, model.binary[name], dtype)
        return g.const(name, model.dense(name).astype(dtype))

    h = g.node("Conv", [h, outer("conv0")], pads=[1, 1, 1, 1])
    zp_w = None
    if weights == "int8":
        zp_w = int8.DEFAULT_WEIGHT_ZERO_POINT if int8_weight_zero_point is None else int8_weight_zero_point
        h = int8.body(g, model, h, int8_ranges or {}, zp_w)
    elif weights == "int2":
        from binexport.formats.onnx import int2

        h = int2.body(g, model, h)
    else:
        h = float_blocks(g, model, h, weight)
    h = bn(g, model, h, "bn", relu=True)
    h = g.node("Conv", [h, outer("conv_last")])
    h = bn(g, model, h, "bn_last", relu=False)
    h = g.node("GlobalAveragePool", [h])
    g.node("Flatten", [h], axis=1, out=OUTPUT_NAME)
    out_elem = onnx.TensorProto.FLOAT16 if weights == "float16" else onnx.TensorProto.FLOAT
    out = helper.make_tensor_value_info(OUTPUT_NAME, out_elem, [n, arch.num_classes])
    graph = helper.make_graph(g.nodes, arch.name.replace("-", "_"), [inp], [out], g.initializers)
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(
        graph,
        opset_imports=opsets,
        producer_name="binexport",
        producer_version=__version__,
        ir_version=helper.find_min_ir_version_for(opsets),
    )
    proto.doc_string = (
        f"{arch.name}, {arch.num_classes} classes ({'1-bit' if model.binarized else 'full precision'}, {arch.label})"
    )
    sha = source_sha256 if source_sha256 is not None else model.source.sha256
    meta = {
        "binexport.architecture": arch.name,
        "binexport.num_classes": str(arch.num_classes),
        "binexport.normalization": json.dumps(
            dict(zip(("mean", "std"), map(list, input_normalization(arch)), strict=True))
        ),
        "binexport.weights": weights,
        "binexport.input": input_kind(weights, normalize_inside, arch.input_bn, arch.normalization),
        "binexport.family": arch.family,
        "binexport.source_sha256": sha,
        "binexport.version": __version__,
    }
    if zp_w is not None:  # int8: zp_w is set exactly then
        codes = "{-1, +1}" if zp_w == 0 else f"{{{zp_w - 1}, {zp_w + 1}}}"
        meta["binexport.int8"] = json.dumps(
            {
                "weights": f"1-bit signs as int8 {codes}, exact" if model.binarized else "per-channel int8, lossy",
                "weight_zero_point": zp_w,
                **(int8_info or {}),
            }
        )
    helper.set_model_props(proto, meta)
    return proto


def float_blocks(g: Graph, model: Model, h: str, weight: Callable[[str], str]) -> str:
    """Every residual block in float (float32, float16, or 1-bit weights expanded at session start)."""
    arch = model.arch
    for blk in arch.blocks():
        p = blk.prefix
        t = g.node(
            "Conv",
            [bn(g, model, h, p + "bn0", relu=True), weight(p + "conv0")],
            pads=onnx_pads(arch, 3, blk.stride),
            strides=[blk.stride, blk.stride],
        )
        t = g.node("Conv", [bn(g, model, t, p + "bn1", relu=True), weight(p + "conv1")], pads=[1, 1, 1, 1])
        if blk.shortcut:
            h = downsample(g, h, arch)
        h = g.node("Add", [h, t])
    return h
