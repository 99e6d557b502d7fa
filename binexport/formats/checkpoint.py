"""PyTorch checkpoints as the training code writes them: read-only.

Covers the training checkpoint (state_dict + optimizer + scheduler + epoch)
and a bare state_dict, zip or legacy, through :mod:`._torchsave` (the one place
``torch.load`` is called). A torch file whose block convs are uint8 packed bits
is the ``packed`` format: this reader reads it too and says so in
``Source.format``. binexport writes deployment formats, not training state,
so there is no writer.
"""

from __future__ import annotations

from pathlib import Path

from binexport.formats import _torchsave
from binexport.model import Model


def read(path: str | Path, binarized: bool | None = None, strict: bool = True) -> Model:
    """A Model from any torch layout binexport knows; see :func:`._torchsave.load_model`."""
    return _torchsave.load_model(path, binarized=binarized, strict=strict)
