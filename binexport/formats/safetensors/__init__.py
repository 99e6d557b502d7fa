"""safetensors: the ecosystem's no-pickle tensor file, with 1-bit weights as packed ``U8`` bits (docs/safetensors.md).

Binarised convs are ``np.packbits(signs, axis=1)`` (bit 1 = +1, first input channel in the most significant
bit, in_channels padded with zero bits to a multiple of 8): the published packed layout's bit order. Float
tensors keep their dtype (``F32``; conv weights ``F16``/``BF16`` with ``weights=``). ``__metadata__`` (strings
only) says everything else a loader needs: architecture and variant, scale rule, bit order, each packed
tensor's unpacked shape, the input normalisation, the source's sha256 and binexport's version. The reader is
binexport's own bounded one (container.py); it needs numpy only, never the ``safetensors`` package or torch.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np

from binexport import __version__
from binexport.errors import FormatError, InputError
from binexport.formats.safetensors.container import MAX_HEADER, Container, build
from binexport.model import VARIANTS, WEIGHTS_DTYPES, Arch, BinaryWeight, Model, Source, input_normalization
from binexport.precision import HALF_KINDS, round_weights, to_bfloat16_bits

#: ``__metadata__["format"]`` of a binexport model file; a safetensors file without it is someone else's.
FORMAT_ID = "binexport-wrn/1"
SCALE_RULE = "sqrt(2 / (in_channels * kh * kw)), from the unpacked shape in packed_shapes; weight = +scale for bit 1"
BIT_ORDER = (
    "numpy.packbits(signs, axis=1, bitorder='big'): bit 1 = +1, bit 0 = -1, the first input channel in the most "
    "significant bit; in_channels padded with 0 bits to a multiple of 8"
)
_DTYPE = {"float16": "F16", "float32": "F32", "float64": "F64", "int32": "I32", "int64": "I64"}
_FLOATS = ("F16", "F32", "F64")
_COUNTERS = ("I64", "I32")


def sniff(head: bytes) -> bool:
    """True for a safetensors header: an 8-byte little-endian length, then a JSON object."""
    if len(head) < 10 or head[8:9] != b"{":
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= MAX_HEADER


def write(model: Model, weights: str | None = None, metadata: dict[str, str] | None = None, **other: object) -> bytes:
    """The safetensors bytes of ``model``.

    Args:
        model: a 1-bit or full-precision model.
        weights: full-precision models only: ``float32`` (lossless), ``float16`` or ``bfloat16`` (conv weights
            rounded to nearest even and stored F16/BF16; BN statistics and bn_last's affine stay F32).
        metadata: user metadata, strings to strings, stored as ``user.KEY``.

    Returns:
        The file's bytes (``safetensors.numpy.load_file`` reads them).

    Raises:
        InputError: an option safetensors doesn't take, an unknown ``weights``, half weights for a 1-bit model.

    Example:
        >>> data = formats.get("safetensors").write(model)   # doctest: +SKIP
    """
    if other:
        raise InputError(f"the 'safetensors' format takes weights and metadata only, got {', '.join(sorted(other))}")
    weights = weights or model.weights_dtype
    if weights not in WEIGHTS_DTYPES:
        raise InputError(f"unknown safetensors weights {weights!r}; valid: {', '.join(WEIGHTS_DTYPES)}")
    model = round_weights(model, weights)
    kinds, tensors, packed = model.arch.kinds, [], {}
    for spec in model.arch.specs():
        if spec.name in model.binary:
            packed[spec.name] = list(spec.shape)
            tensors.append((spec.name, "U8", np.packbits(model.binary[spec.name].signs, axis=1)))
            continue
        arr = np.asarray(model.floats[spec.name])
        if weights != "float32" and kinds[spec.name] in HALF_KINDS:
            half = weights == "float16"
            tensors.append(
                (spec.name, "F16" if half else "BF16", arr.astype(np.float16) if half else to_bfloat16_bits(arr))
            )
            continue
        dtype = _DTYPE.get(arr.dtype.newbyteorder("=").name)
        if dtype is None:
            raise InputError(
                f"tensor {spec.name!r} has dtype {arr.dtype}; safetensors model files hold {', '.join(_DTYPE)}"
            )
        tensors.append((spec.name, dtype, arr))
    return build(_metadata(model, weights, packed, metadata), tensors)


def _metadata(model: Model, weights: str, packed: dict[str, list[int]], user: dict[str, str] | None) -> dict[str, str]:
    a = model.arch
    mean, std = input_normalization(a)
    norm = {"input": "pixel / 255", "mean": list(mean), "std": list(std)}
    if a.input_bn:  # the input BN normalises: the network takes raw pixels
        norm = {"input": "pixel", "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}
    meta = {
        "format": FORMAT_ID,
        "model": "WRN_McDonnell",
        "architecture": json.dumps(
            {"name": a.name, "depth": a.depth, "widths": list(a.widths), "num_classes": a.num_classes}
        ),
        "family": a.family,
        "variant": json.dumps(a.variant()),
        "binarized": "true" if model.binarized else "false",
        "weights": weights,
        "scale_rule": SCALE_RULE,
        "bit_order": BIT_ORDER,
        "packed_shapes": json.dumps(packed),
        "normalization": json.dumps(norm),
        "zero_weights": str(model.zero_weights),
        "source_format": model.source.format,
        "source_sha256": model.source.sha256,
        "binexport_version": __version__,
    }
    carried = {k[5:]: v for k, v in model.metadata.items() if k.startswith("user.")}
    for k, v in {**carried, **(user or {})}.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise InputError(f"user metadata must map strings to strings, got {k!r}: {v!r}")
        meta[f"user.{k}"] = v
    return meta


def read(path: str | Path) -> Model:
    """A Model from a binexport safetensors file, every byte of its header checked first.

    Raises:
        InputError: the file is missing or unreadable.
        FormatError: the header lies about the file, or the metadata does not describe the tensors.
    """
    c = Container.open(path)
    p, meta = c.path, c.metadata
    if meta.get("format") != FORMAT_ID:
        raise FormatError(
            f"{p}: a safetensors file without binexport's metadata ('format': {FORMAT_ID!r}, found "
            f"{str(meta.get('format'))[:40]!r}); its tensors alone don't say how to rebuild the network. Write it "
            "with 'binexport pack --format safetensors'"
        )
    family, binarized, weights = meta.get("family"), meta.get("binarized"), meta.get("weights")
    if family not in VARIANTS or binarized not in ("true", "false") or weights not in WEIGHTS_DTYPES:
        raise FormatError(
            f"{p}: metadata family {str(family)[:30]!r}, binarized {str(binarized)[:10]!r}, weights "
            f"{str(weights)[:10]!r}: expected one of {', '.join(VARIANTS)}; true or false; one of "
            f"{', '.join(WEIGHTS_DTYPES)}"
        )
    packed = _json(meta, "packed_shapes", p)
    if not isinstance(packed, dict) or not all(
        isinstance(s, list) and len(s) == 4 and all(type(d) is int and d > 0 for d in s) for s in packed.values()
    ):
        raise FormatError(f"{p}: metadata 'packed_shapes' must map tensor names to 4 positive sizes")
    by_name = {e.name: e for e in c.entries}
    unknown = [k for k in packed if k not in by_name]
    if unknown:
        raise FormatError(f"{p}: metadata 'packed_shapes' names {unknown[0]!r}, which the file doesn't hold")
    shapes = {e.name: tuple(packed.get(e.name, e.shape)) for e in c.entries}
    try:
        arch = Arch.infer(shapes, str(family))
    except InputError as err:
        raise FormatError(f"{p}: {err}") from None
    _check_arch(p, meta, arch)
    floats: dict[str, np.ndarray] = {}
    bits: dict[str, BinaryWeight] = {}
    kinds = arch.kinds
    for e in c.entries:
        if e.name in packed:
            bits[e.name] = BinaryWeight(_unpack(c, e, tuple(packed[e.name]), kinds[e.name]))
        else:
            floats[e.name] = _float(c, e, kinds[e.name], str(weights))
    zeros = meta.get("zero_weights", "")
    if not zeros.isdigit() or int(zeros) > sum(b.signs.size for b in bits.values()):
        raise FormatError(
            f"{p}: metadata 'zero_weights' must be a count of the binarised weights, found {zeros[:20]!r}"
        )
    user = {k: v for k, v in meta.items() if k.startswith("user.")}
    try:
        return Model(
            arch,
            binarized == "true",
            floats,
            bits,
            int(zeros),
            Source("safetensors", str(p), c.size, "", _breakdown(c, kinds, set(packed))),
            {"binarized_from": "safetensors metadata", **user},
            str(weights),
        )
    except InputError as e:
        raise FormatError(f"{p}: the tensors don't form a valid model: {e}") from None


def _json(meta: dict[str, str], key: str, p: Path) -> Any:
    try:
        return json.loads(meta.get(key, ""))
    except (ValueError, RecursionError):
        raise FormatError(f"{p}: metadata {key!r} must be JSON, found {meta.get(key, '')[:40]!r}") from None


def _check_arch(p: Path, meta: dict[str, str], arch: Arch) -> None:
    said = _json(meta, "architecture", p)
    want = {"name": arch.name, "depth": arch.depth, "widths": list(arch.widths), "num_classes": arch.num_classes}
    if said != want:
        raise FormatError(f"{p}: metadata 'architecture' says {str(said)[:80]}, but the tensors form {want}")
    if _json(meta, "variant", p) != arch.variant():
        raise FormatError(f"{p}: metadata 'variant' is not the {arch.family} family's ({arch.variant()})")


def _unpack(c: Container, e: Any, shape: tuple[int, ...], kind: str) -> np.ndarray:
    """Sign bits (True = +1) of a U8 tensor of ``(out, ceil(in / 8), kh, kw)``, padding bits zero."""
    o, i, kh, kw = shape
    want = (o, math.ceil(i / 8), kh, kw)
    if kind != "binary" or e.dtype != "U8" or e.shape != want:
        raise FormatError(
            f"{c.path}: tensor {e.name!r} is listed as packed bits of {list(shape)}, so it must be a binarised conv "
            f"stored U8 {list(want)}; found a {kind} tensor, {e.dtype} {list(e.shape)}"
        )
    full = np.unpackbits(c.array(e), axis=1)
    if full[:, i:].any():
        raise FormatError(f"{c.path}: tensor {e.name!r} has padding bits set past its {i} input channels")
    return full[:, :i].astype(bool)


def _float(c: Container, e: Any, kind: str, weights: str) -> np.ndarray:
    """A float (or counter) tensor as the Model holds it: half conv weights widened to float32."""
    half = {"float16": "F16", "bfloat16": "BF16"}.get(weights)
    conv = kind in HALF_KINDS
    if e.name.endswith(".num_batches_tracked"):
        want: tuple[str, ...] = _COUNTERS
    else:
        want = (half,) if half and conv else _FLOATS
    if e.dtype not in want:
        raise FormatError(
            f"{c.path}: tensor {e.name!r} is {e.dtype}; with weights {weights!r} it must be one of {', '.join(want)}"
        )
    arr = c.array(e)
    if e.dtype == "BF16":
        return (arr.astype(np.uint32) << np.uint32(16)).view(np.float32).reshape(e.shape)
    return arr.astype(np.float32) if half and conv else arr


def _breakdown(c: Container, kinds: dict[str, str], packed: set[str]) -> dict[str, int]:
    out = {"header": 8 + c.header_length, "binarized weights": 0, "float weights": 0, "BN statistics": 0}
    for e in c.entries:
        key = "binarized weights" if e.name in packed else "BN statistics" if kinds[e.name] == "bn" else "float weights"
        out[key] += e.end - e.begin
    return out
