"""The ``packed`` file format: the published packed checkpoint (``wrn20-10-1bit-packed.pth.tar``).

A torch file (layout ``packed-checkpoint``): a flat dict with ``module.`` keys; each binarized block conv is
uint8 ``np.packbits(bits, axis=1)`` (bit 1 = +1, MSB first), every other tensor as it was, so the published
evaluation script loads it unchanged. Not to be confused with the ``.bwn`` tensor encoding ``packed`` (signs
8 per byte inside a ``.bwn`` file) or ``packed``, the old CLI name of 1-bit ONNX weights.

Read through :mod:`.torchfile`; the ``checkpoint`` reader hands any torch file with packed bits here
(:func:`from_record`), and :func:`read` reads this layout only.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from binexport.errors import InputError
from binexport.formats import torchfile
from binexport.model import Arch, BinaryWeight, Model, Source

_BLOCK_CONV = re.compile(r"group\d+\.block\d+\.conv[01]")


def write(model: Model, **options: object) -> bytes:
    """The bytes of a ``torch.save`` of the published packed layout.

    Raises:
        InputError: a McDonnell variant, a full-precision model, an option (there are none), or a block conv with
            in_channels % 8 != 0.
    """
    if options:
        raise InputError(f"the 'packed' format takes no options, got {', '.join(sorted(options))}")
    if not model.arch.is_port:
        raise InputError(
            f"the published packed layout holds the binary-wide-resnet PyTorch port only, and this "
            f"{model.arch.name} is the {model.arch.label} ("
            f"{'input BN, ' if model.arch.input_bn else ''}1-bit conv0 and head); use "
            "--format bwn, which holds every variant"
        )
    if not model.binarized:
        raise InputError("the 'packed' format holds binarised weights only; binarise the model first")
    odd = [f"{k} (in={b.shape[1]})" for k, b in model.binary.items() if b.shape[1] % 8]
    if odd:
        raise InputError(
            f"the published packed layout needs in_channels % 8 == 0, but {', '.join(odd[:3])} "
            "is not; use --format bwn, which holds any channel count"
        )
    import torch

    state = {}
    for spec in model.arch.specs():
        if spec.name in model.binary:
            arr = np.packbits(model.binary[spec.name].signs, axis=1)
        else:
            arr = np.array(model.floats[spec.name], copy=True)
        state["module." + spec.name] = torch.from_numpy(arr)
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def read(path: str | Path) -> Model:
    """A Model from a packed checkpoint.

    Raises:
        InputError: what :func:`.torchfile.load` refuses; a torch file with no uint8 packed bits (another
            layout); packed bits outside the block convs, or float block convs beside them.
    """
    rec = torchfile.load(path)
    if not rec.bit_tensors:
        raise InputError(f"{path}: expected a packed checkpoint (uint8 block convs), found a {rec.layout}")
    return from_record(rec)


def from_record(rec: torchfile.TorchRecord) -> Model:
    """The 1-bit Model of a torch file holding uint8 packed bits (any wrapper: the layout is ``packed-checkpoint``).

    Raises:
        InputError: packed bits on a tensor that is not a block conv, or a block conv left as floats.
    """
    p, bits = rec.path, rec.bit_tensors
    bad = sorted(k for k in bits if not _BLOCK_CONV.fullmatch(k))  # before shapes: unpacking changed them
    if bad:
        raise InputError(
            f"{p}: uint8 (packed) tensors are only valid for block convs (group*.block*.conv0/conv1), "
            f"found {', '.join(bad[:3])}"
        )
    arch = Arch.infer({k: v.shape for k, v in rec.arrays.items()})
    kinds = arch.kinds
    parts = torchfile.breakdown(rec.arrays, kinds, rec.size, binarized=True, bit_tensors=bits, extra=rec.extra)
    source = Source("packed", str(p), rec.size, "", parts, torchfile.LAYOUT_PACKED)
    missing = [k for k, kind in kinds.items() if kind == "binary" and k not in bits]
    if missing:
        raise InputError(
            f"{p}: packed checkpoint has float block convs ({', '.join(missing[:3])}); "
            "every group*.block*.conv* must be uint8 packed bits"
        )
    floats = {k: v for k, v in rec.arrays.items() if k not in bits}
    binary = {k: BinaryWeight(v) for k, v in rec.arrays.items() if k in bits}
    return Model(arch, True, floats, binary, 0, source, {"binarized_from": "packed layout"})
