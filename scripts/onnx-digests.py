#!/usr/bin/env python3
"""sha256 of every file binexport writes, over a grid of models and options: run before and after a refactor.

Usage: ``PYTHONPATH=. python3 scripts/onnx-digests.py OUT.json [--quick]``, then ``diff`` two outputs.

The grid: synthetic WRN-8-1 (10 classes) and WRN-14 with odd widths (11/22/44, 7 classes: channel counts and
weight sizes that are not multiples of 8) in every architecture family, 1-bit and full precision; the published
WRN-20-10 packed checkpoint and McDonnell's demo .mat where present. For each: every ONNX weight encoding
(int8 with both weight zero points, calibrated on fixed inputs), opsets, fixed and dynamic batch, normalisation
inside and out, every 1-bit design of ``formats/onnx/designs.py``; ``.bwn`` in every encoding and weight
dtype; the packed checkpoint; the torch reference's logits and calibration ranges on a fixed batch; the
architecture's tensor list and int8 range names. Also the demo's own files (``pack`` to .bwn, ``export_onnx``
1-bit and int8 calibrated as the demo does).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from binexport import formats
from binexport.data.synth import random_state
from binexport.errors import InputError
from binexport.formats import bwn, packed
from binexport.formats import onnx as fmt
from binexport.formats.onnx import int8
from binexport.model import Arch, Model, binarize

ROOT = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("BINEXPORT_REALDATA", ROOT.parent / "shared" / "realdata"))
REAL_PACKED = REALDATA / "seed-checkpoint" / "wrn20-10-1bit-packed.pth.tar"
DEMO_MAT = ROOT / "binexport" / "data" / "demo" / "TrainedWideResNet20-10_CIFAR10_1-bit-per-weight-4MB.mat"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def synth(depth: int, widths: tuple[int, int, int], classes: int, family: str, binarized: bool) -> Model:
    arch = Arch.of(depth, widths, classes, family)
    m = Model(arch, False, random_state(arch, seed=depth + classes))
    return binarize(m) if binarized else m


def inputs(model: Model, n: int = 4) -> np.ndarray:
    rng = np.random.default_rng(7)
    if model.arch.input_bn:
        return rng.uniform(0, 255, (n, 3, 32, 32)).astype(np.float32)
    return rng.normal(0, 1, (n, 3, 32, 32)).astype(np.float32)


def digests(name: str, model: Model, full: bool, out: dict[str, str]) -> None:
    from binexport.runtimes.torch_ref import TorchRuntime

    arch = model.arch
    out[f"{name}/specs"] = sha(json.dumps([(s.name, s.shape, s.kind) for s in arch.specs()]).encode())
    out[f"{name}/int8-range-names"] = sha(json.dumps(int8.required_ranges(model)).encode())
    rt = TorchRuntime(model)
    x = inputs(model)
    out[f"{name}/torch-logits"] = sha(rt.logits(x, batch_size=4).tobytes())
    ranges = rt.activation_ranges(x, percentile=99.9, batch_size=2)
    out[f"{name}/torch-ranges"] = sha(json.dumps(sorted(ranges.items())).encode())
    info = {"images": 4, "percentile": 99.9, "source": "digests"}
    encodings = ["1-bit", "float32", "float16", "int8"] if model.binarized else ["float32", "float16", "int8"]
    top = __import__("onnx").defs.onnx_opset_version()
    grid = [(o, b, ni) for o in (13, 18, top) for b in ("dynamic", 3) for ni in (False, True)]
    if not full:
        grid = [(18, "dynamic", False), (18, "dynamic", True), (13, 1, False)]
    for w in encodings:
        for opset, batch, ni in grid:
            zps = int8.WEIGHT_ZERO_POINTS if w == "int8" else (None,)
            for zp in zps:
                opts = dict(weights=w, opset=opset, batch=batch, normalize_inside=ni)
                if w == "int8":
                    opts.update(int8_ranges=ranges, int8_info=info, int8_weight_zero_point=zp)
                key = f"{name}/onnx/{w}/opset{opset}/batch-{batch}/{'inside' if ni else 'outside'}"
                out[key + (f"/zp{zp}" if zp is not None else "")] = sha(fmt.write(model, **opts))
    if model.binarized:
        from binexport.formats.onnx.designs import DESIGNS

        for design, packer in DESIGNS.items():
            try:  # lut512 holds 3x3 kernels only: McDonnell's 1-bit 1x1 conv_last can't take it
                out[f"{name}/design/{design}"] = sha(
                    fmt.build_model(model, weights="1-bit", _packer=packer).SerializeToString()
                )
            except ValueError as e:
                out[f"{name}/design/{design}"] = f"error: {e}"
    bwn_grid = [{}, {"encoding": "packed"}]
    if full or not model.binarized:
        bwn_grid += [{"encoding": "rans"}, {"encoding": "rans-ref"}] if model.binarized else []
    if not model.binarized:
        bwn_grid += [{"weights": "float16"}, {"weights": "bfloat16"}]
    for opts in bwn_grid:
        out[f"{name}/bwn/{json.dumps(opts, sort_keys=True)}"] = sha(bwn.write(model, **opts))
    out[f"{name}/bwn/metadata"] = sha(bwn.write(model, encoding="packed", metadata={"k": "v"}))
    if model.binarized and arch.is_port:
        try:
            out[f"{name}/packed"] = sha(packed.write(model))
        except InputError as e:
            out[f"{name}/packed"] = f"refused: {e}"


def demo_files(out: dict[str, str]) -> None:
    """The demo's own files: pack to .bwn, 1-bit ONNX and int8 ONNX calibrated on its 256 training images."""
    from binexport import export_onnx, pack
    from binexport.verbs.demo import DEMO_CALIBRATION, DEMO_MODEL

    with tempfile.TemporaryDirectory() as d:
        o = Path(d)
        pack(DEMO_MODEL, o / "model.bwn", format="bwn", force=True)
        export_onnx(DEMO_MODEL, o / "model.onnx", force=True)
        export_onnx(
            DEMO_MODEL,
            o / "model-int8.onnx",
            weights="int8",
            calibrate=DEMO_CALIBRATION,
            calibration_size=256,
            force=True,
        )
        export_onnx(DEMO_MODEL, o / "model-float32.onnx", weights="float32", force=True)
        for f in sorted(o.iterdir()):
            out[f"demo/{f.name}"] = sha(f.read_bytes())


def main() -> None:
    quick = "--quick" in sys.argv
    out: dict[str, str] = {}
    models: list[tuple[str, Model, bool]] = [
        ("wrn8-1-10", synth(8, (16, 32, 64), 10, "pytorch", True), True),
        ("wrn8-1-10-fp", synth(8, (16, 32, 64), 10, "pytorch", False), True),
    ]
    for family in ("pytorch", "mcdonnell-matlab", "mcdonnell-keras", "pytorchcv"):
        for b in (True, False):
            models.append((f"wrn14-odd-{family}-{'1bit' if b else 'fp'}", synth(14, (11, 22, 44), 7, family, b), True))
    if not quick:
        if REAL_PACKED.is_file():
            models.append(("real-wrn20-10-packed", formats.load(REAL_PACKED), False))
        models.append(("demo-mat", formats.load(DEMO_MAT), False))
    for name, model, full in models:
        print(name, file=sys.stderr, flush=True)
        digests(name, model, full, out)
    if not quick:
        demo_files(out)
    Path(sys.argv[1]).write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"{len(out)} digests -> {sys.argv[1]}", file=sys.stderr)


if __name__ == "__main__":
    main()
