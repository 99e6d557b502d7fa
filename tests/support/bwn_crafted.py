"""Hand-made ``.bwn`` files the writer never produces: legal but hostile (constant kernels), for the size limit.

A constant-kernel ``rans`` payload needs no stream words at all (one present
symbol has frequency T, so every lane stays at 2^16): its size is set by the
lane count alone, which a hostile writer raises just enough to meet the
format's 256-weights-per-byte rule. The decoded model is then ~256 times the
file, the worst the format allows (FORMAT.md section 10, "Decoded size").
"""

from __future__ import annotations

import math

import numpy as np

from binexport.data.synth import make_arch
from binexport.formats.bwn import container as box


def constant_kernels(shape: tuple[int, ...], symbol: int = 0) -> bytes:
    """A legal ``rans`` payload in which every kernel of ``shape`` (O, I, KH, KW) has pattern ``symbol``."""
    o, i, kh, kw = shape
    n, k = o * i, kh * kw
    # smallest lane count that keeps weights per byte <= 256 and symbols per lane <= 4096
    lanes = max(1, -(-n // 4096), -(-(math.prod(shape) - 256 * (8 + 2**k)) // (4 * 256)))
    table = np.full(2**k, 255, np.uint8)
    table[symbol] = 0
    return (
        bytes([0, 0, 0, 0])
        + np.uint32(lanes).astype("<u4").tobytes()
        + table.tobytes()
        + np.full(lanes, 1 << 16, "<u4").tobytes()
    )


def constant_model_file(depth: int, width: float, num_classes: int = 10) -> bytes:
    """A whole WRN whose block convs are constant-kernel ``rans`` tensors and whose floats are zeros (raw)."""
    arch = make_arch(depth, width, num_classes)
    tensors = []
    for spec in arch.specs():
        if spec.kind == "binary":
            tensors.append((spec.name, "b1", spec.shape, "rans", constant_kernels(spec.shape)))
        elif spec.name.endswith("num_batches_tracked"):
            tensors.append((spec.name, "i64", spec.shape, "raw", bytes(8)))
        else:
            tensors.append((spec.name, "f32", spec.shape, "raw", bytes(4 * math.prod(spec.shape))))
    meta = {
        "model": "WRN_McDonnell",
        "binarized": True,
        "zero_weights": 0,
        "architecture": {
            "name": arch.name,
            "depth": arch.depth,
            "width": arch.width,
            "widths": list(arch.widths),
            "num_classes": arch.num_classes,
        },
    }
    return box.build(meta, tensors)


def branch_arrays() -> list[tuple[str, str, np.ndarray, str, dict[str, int]]]:
    """(name, dtype, array, encoding, writer overrides) of ``tiny-branches.bwn``: one tensor per reader branch.

    Each name says the branch. Kernel tensors are built so that rans-ref finds parents (flipped ones too) and
    leaves most of the 512 patterns absent; the f32-rans tensor has top bytes with gaps between them.
    """
    rng = np.random.default_rng(11)

    def related(g: int, p: int, k: tuple[int, int], axis: int) -> np.ndarray:
        base = rng.random((p, *k)) < 0.25  # skewed: most patterns never occur
        groups = [base ^ (rng.random(base.shape) < 0.05) ^ bool(j % 3 == 2) for j in range(g)]  # every 3rd flipped
        s = np.stack(groups)
        return s if axis == 0 else s.transpose(1, 0, 2, 3)

    floats = np.concatenate(
        [
            rng.normal(0, 0.05, 4000),
            rng.normal(0, 3, 990),
            [1e10, -1e10, 1e-30, -2e-38, 7e37, 0.0, -0.0, np.inf, -np.inf, 1.0],
        ]
    )
    rng.shuffle(floats)
    return [
        ("raw-f16", "f16", rng.normal(0, 1, (3, 5)).astype(np.float16), "raw", {}),
        ("raw-f32", "f32", rng.normal(0, 1, (7,)).astype(np.float32), "raw", {}),
        ("raw-f64", "f64", rng.normal(0, 1, (2, 3)).astype(np.float64), "raw", {}),
        ("raw-i32", "i32", rng.integers(-(2**31), 2**31, (5,)).astype(np.int32), "raw", {}),
        ("raw-i64-scalar", "i64", np.array(-(2**62) - 12345, np.int64), "raw", {}),
        ("raw-f32-empty", "f32", np.zeros((2, 0, 5), np.float32), "raw", {}),
        ("packed-81-bits", "b1", rng.random((9, 1, 3, 3)) < 0.5, "packed", {}),
        ("packed-1d-13-bits", "b1", rng.random(13) < 0.5, "packed", {}),
        ("packed-empty", "b1", np.zeros((0, 4, 3, 3), bool), "packed", {}),
        ("rans-3-lanes-partial-row", "b1", rng.random((64, 40, 3, 3)) < 0.15, "rans", {"lanes": 3}),
        ("rans-1x3-kernels-2-lanes", "b1", rng.random((5, 7, 1, 3)) < 0.3, "rans", {"lanes": 2}),
        ("rans-ref-axis0-4-lanes", "b1", related(24, 20, (3, 3), 0), "rans-ref", {"lanes": 4, "axis": 0}),
        ("rans-ref-axis1-5-lanes", "b1", related(22, 18, (3, 3), 1), "rans-ref", {"lanes": 5, "axis": 1}),
        ("f32-rans-gaps-3-lanes", "f32", floats.astype(np.float32).reshape(50, 100), "f32-rans", {"lanes": 3}),
        ("f32-rans-1-lane", "f32", rng.normal(0, 0.1, 9).astype(np.float32), "f32-rans", {}),
    ]


def branches_file() -> bytes:
    """The bytes of ``tests/golden/tiny-branches.bwn`` (not a model: read it with ``bwn.read_tensors``)."""
    from binexport.formats.bwn import codec, data_crc32

    tensors, crcs = [], {}
    for name, dtype, arr, enc, opts in branch_arrays():
        if enc == "raw":
            payload = arr.astype(box.NUMPY[dtype]).tobytes()
        elif enc == "packed":
            payload = codec.encode_packed(arr)
        elif enc == "f32-rans":
            payload = codec.encode_f32(arr, **opts)
        else:
            payload = codec.encode_kernels(arr, refs=enc == "rans-ref", **opts)
            assert payload is not None, name
        tensors.append((name, dtype, tuple(arr.shape), enc, payload))
        if enc not in ("raw", "packed"):
            crcs[name] = data_crc32(arr, dtype)
    return box.build(
        {"purpose": "golden test: every branch a .bwn reader has (docs/FORMAT.md section 12)"}, tensors, crcs
    )


# --- the worst legal files for a decoder's memory (FORMAT.md 10.5, "Peak memory") ---------------------------


def one_lane_per_kernel(n: int) -> bytes:
    """A container of one ``rans`` tensor (n, 1, 3, 3) of constant kernels with one lane per kernel: the most
    lanes a payload can declare (4 bytes of state each), which is what a decoder's per-lane vectors scale with."""
    table = np.full(512, 255, np.uint8)
    table[0] = 0
    payload = bytes(4) + np.uint32(n).astype("<u4").tobytes() + table.tobytes() + np.full(n, 1 << 16, "<u4").tobytes()
    return box.build({"purpose": "one lane per kernel"}, [("w", "b1", (n, 1, 3, 3), "rans", payload)])


def constant_bf16(n: int, rounds: int) -> bytes:
    """A legal bf16 ``planes`` payload of n values 1.0 with ``rounds`` values a lane: one present A and B symbol,
    so no stream words, 4 state bytes a lane. ``rounds`` = 120 is near the 32-values-a-byte count limit (the
    largest decoded size a file allows), ``rounds`` = 1 the most lanes (the largest per-lane scratch)."""
    lanes = -(-n // rounds)
    b_table = np.full(128, 255, np.uint8)
    b_table[0] = 0
    return (
        np.uint32(lanes).astype("<u4").tobytes()
        + np.array([254, 0], "<u2").tobytes()
        + bytes([0])
        + np.array([1], "<u2").tobytes()
        + bytes([127])
        + b_table.tobytes()
        + np.full(lanes, 1 << 16, "<u4").tobytes()
    )


def one_lane_per_value(n: int) -> bytes:
    """A container of one constant bf16 ``planes`` tensor of n values with one lane per value."""
    return box.build({"purpose": "one lane per value"}, [("w", "bf16", (n,), "planes", constant_bf16(n, 1))])


def constant_bf16_model_file(depth: int, width: float, num_classes: int = 10, rounds: int = 120) -> bytes:
    """A full-precision WRN stored with ``weights: "bfloat16"`` whose conv weights are all 1.0 in ``planes``
    payloads of ``rounds`` values a lane: legal, and ~120 x its size once decoded to float32."""
    arch = make_arch(depth, width, num_classes)
    tensors = []
    for spec in arch.specs():
        if spec.kind in ("binary", "conv"):
            tensors.append((spec.name, "bf16", spec.shape, "planes", constant_bf16(math.prod(spec.shape), rounds)))
        elif spec.name.endswith("num_batches_tracked"):
            tensors.append((spec.name, "i64", spec.shape, "raw", bytes(8)))
        else:
            tensors.append((spec.name, "f32", spec.shape, "raw", bytes(4 * math.prod(spec.shape))))
    meta = {
        "model": "WRN_McDonnell",
        "binarized": False,
        "zero_weights": 0,
        "weights": "bfloat16",
        "architecture": {
            "name": arch.name,
            "depth": arch.depth,
            "width": arch.width,
            "widths": list(arch.widths),
            "num_classes": arch.num_classes,
        },
    }
    return box.build(meta, tensors)
