"""The ``.bwn`` format: a specified, checksummed, torch-free file for 1-bit WRNs (docs/FORMAT.md).

Reading needs numpy only and never imports torch. Raw tensors are memory-mapped
views; 1-bit tensors are stored as packed bits or entropy-coded kernel patterns,
chosen per tensor (the smallest by default). The coded streams of a file are
decoded in lockstep batches (up to 64 streams and 2^24 values each), so decoding
stays well under a second and its scratch stays bounded. What a file may decode
to is capped (``max_decoded_bytes``) before anything is decoded, and the peak is
bounded by that and the file size (FORMAT.md 10.5).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from binexport import __version__
from binexport.errors import FormatError, InputError
from binexport.formats.bwn import codec, planes
from binexport.formats.bwn import container as box
from binexport.formats.bwn.decode import check_crcs, data_crc32, decode_tensors
from binexport.formats.bwn.describe import describe  # noqa: F401 (part of this format's surface)
from binexport.formats.bwn.metadata import (
    COUNTER_DTYPES,
    FLOAT_DTYPES,
    WEIGHTS_CHOICES,
    check_metadata,
    check_weights,
    check_zero_positions,
    zero_positions,
)
from binexport.formats.bwn.metadata import HALF_DTYPE as _HALF_DTYPE
from binexport.model import Arch, BinaryWeight, Model, Source, input_normalization
from binexport.precision import HALF_KINDS, round_weights, to_bfloat16_bits

#: Values of ``encoding=`` (``binexport pack --encoding``): how 1-bit tensors are stored.
ENCODING_CHOICES = ("best", "packed", "rans", "rans-ref")
#: ``WEIGHTS_CHOICES``, the values of ``weights=`` (``binexport pack --weights``), come from metadata.py.
_DTYPES = {
    np.dtype("float16"): "f16",
    np.dtype("float32"): "f32",
    np.dtype("float64"): "f64",
    np.dtype("int32"): "i32",
    np.dtype("int64"): "i64",
}


def sniff(head: bytes) -> bool:
    """True for the ``.bwn`` magic."""
    return head.startswith(box.MAGIC)


def write(
    model: Model, encoding: str | None = None, metadata: dict[str, str] | None = None, weights: str | None = None
) -> bytes:
    """The ``.bwn`` bytes of ``model``.

    Args:
        model: a 1-bit or full-precision model.
        encoding: 'best' (default: per tensor the smallest of packed, rans and rans-ref for 1-bit tensors,
            raw, f32-rans or planes for floats), 'packed' (every tensor memory-mappable: packed bits and raw
            floats), 'rans' or 'rans-ref' (that coding for every 1-bit tensor that allows it, packed otherwise).
        metadata: user metadata, strings to strings.
        weights: full-precision models only: 'float32' (lossless), 'float16' or 'bfloat16' (conv weights
            rounded to nearest even and stored half, declared in metadata 'weights'; BN statistics and
            bn_last's affine stay float32). Default: how the model's weights were stored (float32 normally).

    Returns:
        The file's bytes.

    Raises:
        InputError: an unknown option value, half weights for a 1-bit model, a dtype .bwn can't hold.

    Example:
        >>> data = bwn.write(model, weights="float16")   # doctest: +SKIP
    """
    mode = encoding or "best"
    if mode not in ENCODING_CHOICES:
        raise InputError(f"unknown .bwn encoding {mode!r}; valid: {', '.join(ENCODING_CHOICES)}")
    weights = weights or model.weights_dtype
    if weights not in WEIGHTS_CHOICES:
        raise InputError(f"unknown .bwn weights {weights!r}; valid: {', '.join(WEIGHTS_CHOICES)}")
    model = round_weights(model, weights)
    user = _user_metadata(model, metadata)
    kinds = model.arch.kinds
    tensors, data_crc = [], {}
    for spec in model.arch.specs():
        if spec.name in model.binary:
            signs = model.binary[spec.name].signs
            enc, payload = _choose_bits(signs, mode)
            tensors.append((spec.name, "b1", spec.shape, enc, payload))
            if enc not in ("raw", "packed"):
                data_crc[spec.name] = data_crc32(signs, "b1")
            continue
        arr = np.asarray(model.floats[spec.name])
        if weights in _HALF_DTYPE and kinds[spec.name] in HALF_KINDS:
            dtype = _HALF_DTYPE[weights]
            bits = arr.astype(np.float16).view(np.uint16) if dtype == "f16" else to_bfloat16_bits(arr)
        else:
            found = _DTYPES.get(arr.dtype.newbyteorder("="))
            if found is None:
                raise InputError(
                    f"tensor {spec.name!r} has dtype {arr.dtype}, which .bwn can't hold; expected one "
                    f"of {', '.join(str(d) for d in _DTYPES)}"
                )
            dtype = found
            want = COUNTER_DTYPES if spec.name.endswith(".num_batches_tracked") else FLOAT_DTYPES
            if dtype not in want:  # what every model reader refuses (FORMAT.md section 4)
                raise InputError(
                    f"tensor {spec.name!r} has dtype {arr.dtype}; a .bwn model stores it as one of {', '.join(want)}"
                )
            bits = np.ascontiguousarray(arr).astype(box.NUMPY[dtype], copy=False)
        enc, payload = _choose_float(bits, dtype, mode, with_planes=not model.binarized)
        tensors.append((spec.name, dtype, tuple(arr.shape), enc, payload))
        if enc not in ("raw", "packed"):  # the raw payload's values: f16 / bf16 bits viewed as their raw type
            data_crc[spec.name] = data_crc32(np.ascontiguousarray(bits).view(box.NUMPY[dtype]), dtype)
    meta = _metadata(model, user)
    if weights in _HALF_DTYPE:
        meta["weights"] = weights  # lossy: only then is the key written, so float32 files keep their bytes
    return box.build(meta, tensors, data_crc, 0 if model.arch.is_port else box.FLAG_VARIANT)


def _choose_bits(signs: np.ndarray, mode: str) -> tuple[str, bytes]:
    packed = codec.encode_packed(signs)
    options: dict[str, bytes | None] = {"packed": packed}
    beat = len(packed) if mode == "best" else None  # 'best' skips codings that can't win
    if mode in ("best", "rans"):
        options["rans"] = codec.encode_kernels(signs, refs=False, beat=beat)
    if mode in ("best", "rans-ref"):
        options["rans-ref"] = codec.encode_kernels(signs, refs=True, beat=beat)
    if mode != "best" and (chosen := options.get(mode)) is not None:
        return mode, chosen
    return min(((k, v) for k, v in options.items() if v is not None), key=lambda kv: len(kv[1]))


def _choose_float(arr: np.ndarray, dtype: str, mode: str, with_planes: bool) -> tuple[str, bytes]:
    """The smallest of raw, planes and f32-rans (only raw for 'packed', the memory-mappable mode).

    ``planes`` only for full-precision models: a 1-bit model's files then stay readable by every version-1
    reader, including those from before planes existed, for the 0.15 % it would save (FORMAT.md 13.2).
    """
    raw = np.ascontiguousarray(arr).tobytes()
    best = ("raw", raw)
    if mode == "packed" or not arr.size or dtype not in planes.LAYOUTS:
        return best
    bits = np.ascontiguousarray(arr).reshape(-1).view(planes.LAYOUTS[dtype].item)
    coded = planes.encode(bits, dtype) if with_planes else None
    if coded is not None and len(coded) < len(raw):
        best = ("planes", coded)
    if dtype == "f32" and _f32_rans_bound(bits) < len(best[1]):  # skip f32-rans where it can't win
        coded = codec.encode_f32(bits.view("<f4"))
        if len(coded) < len(best[1]):
            best = ("f32-rans", coded)
    return best


def _f32_rans_bound(bits: np.ndarray) -> float:
    """A lower bound on an f32-rans payload: the order-0 entropy of the top bytes plus 3 stored bytes each."""
    c = np.bincount(bits >> 24, minlength=256)
    c = c[c > 0]
    return float(-(c * np.log2(c / c.sum())).sum()) / 8 + 3 * bits.size


def _user_metadata(model: Model, metadata: dict[str, str] | None) -> dict[str, str]:
    user = {k[5:]: v for k, v in model.metadata.items() if k.startswith("user.")}
    for k, v in (metadata or {}).items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise InputError(f"user metadata must map strings to strings, got {k!r}: {v!r}")
        user[k] = v
    return user


def _metadata(model: Model, user: dict[str, str]) -> dict[str, object]:
    a = model.arch
    mean, std = input_normalization(a)  # pytorchcv's own for its family (FORMAT.md section 4.1)
    norm = {"input": "pixel / 255", "mean": list(mean), "std": list(std)}
    variant: dict[str, object] = {}
    if not a.is_port:
        variant = {"variant": {"family": a.family, **a.variant()}}
    if a.input_bn:  # the input BN normalises: the network takes raw pixels (FORMAT.md section 4.1)
        norm = {"input": "pixel", "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}
    return {
        "model": "WRN_McDonnell",
        "architecture": {
            "name": a.name,
            "depth": a.depth,
            "width": int(a.width) if a.width.is_integer() else a.width,
            "widths": list(a.widths),
            "num_classes": a.num_classes,
        },
        "binarized": model.binarized,
        "binary_scale": "sqrt(2 / (in_channels * kh * kw))",
        "normalization": norm,
        **variant,
        "source": {"format": model.source.format, "sha256": model.source.sha256, "bytes": model.source.size},
        "zero_weights": model.zero_weights,
        **({"zero_positions": zp} if (zp := zero_positions(model.binary, model.zero_weights)) else {}),
        "binexport_version": __version__,
        "user": user,
    }


def read(path: str | Path, verify_checksums: bool = True, max_decoded_bytes: int | None = None) -> Model:
    """A Model from a ``.bwn`` file; raw tensors stay memory-mapped. Tensor CRCs are checked unless told not to.

    ``max_decoded_bytes``: refuse a file whose tensors decode to more (FORMAT.md section 10, "Decoded size");
    None means ``container.default_limit(file size)``: 64 x the file, at least 256 MiB, at most 4 GiB.
    """
    c = box.Container.open(path, max_decoded_bytes)
    p = c.path
    if verify_checksums:
        check_crcs(c)
    arch = check_metadata(c)
    weights = check_weights(c, arch)
    zeros = check_zero_positions(c, arch)
    # bf16 has no numpy type; half-precision weights come back as the float32 they stand for, widened tensor by
    # tensor as they are decoded (so no file's uint16 bits and float32 values are all held at once)
    arrays = decode_tensors(c, verify_checksums, frozenset({"bf16"} | ({"f16"} if weights != "float32" else set())))
    floats = {k: v for k, v in arrays.items() if v.dtype != bool}
    bits = {k: v for k, v in arrays.items() if v.dtype == bool}
    del arrays
    meta = c.metadata
    binarized = meta["binarized"]
    if bool(bits) != binarized:
        raise FormatError(
            f"{p}: metadata says binarized={binarized} but the file has {len(bits)} 1-bit tensors (field 'binarized')"
        )
    user = meta.get("user", {})
    try:
        model = Model(
            arch,
            binarized,
            floats,
            {k: BinaryWeight(v, zeros[k]) if k in zeros else BinaryWeight(v) for k, v in bits.items()},
            meta["zero_weights"],
            Source("bwn", str(p), int(c.data.size), "", _breakdown(c, arch)),
            {"binarized_from": "bwn header", **{f"user.{k}": v for k, v in user.items()}},
            weights,
        )
    except InputError as e:
        raise FormatError(f"{p}: the tensors don't form a valid model: {e}") from None
    return model


def read_tensors(
    path: str | Path, verify_checksums: bool = True, max_decoded_bytes: int | None = None
) -> dict[str, np.ndarray]:
    """Every tensor of any ``.bwn`` file by name, model or not: floats as stored, b1 as bools (True = +1)."""
    c = box.Container.open(path, max_decoded_bytes)
    if verify_checksums:
        check_crcs(c)
    return decode_tensors(c, verify_checksums)


def _breakdown(c: box.Container, arch: Arch) -> dict[str, int]:
    kinds = arch.kinds
    out = {"header": 32 + c.header_length, "binarized weights": 0, "float weights": 0, "BN statistics": 0}
    for e in c.entries:
        key = "binarized weights" if e.dtype == "b1" else "BN statistics" if kinds[e.name] == "bn" else "float weights"
        out[key] += e.length
    out["padding"] = int(c.data.size) - sum(out.values())
    return out
