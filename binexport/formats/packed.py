"""The published packed checkpoint layout (``wrn20-10-1bit-packed.pth.tar``).

A flat dict with ``module.`` keys; each binarised conv is uint8
``np.packbits(bits, axis=1)`` (bit 1 = +1, MSB first), every other tensor as
it was, so the published evaluation script loads it unchanged.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from binexport.errors import InputError
from binexport.formats import _torchsave
from binexport.model import Model


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
    """A Model from a packed checkpoint; any other torch layout is refused (InputError)."""
    model = _torchsave.load_model(path)
    if model.source.format != "packed":
        raise InputError(f"{path}: expected a packed checkpoint (uint8 block convs), found a {model.source.layout}")
    return model
