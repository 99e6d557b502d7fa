"""PyTorch checkpoints as the training code writes them: read-only.

Covers the training checkpoint (state_dict + optimizer + scheduler + epoch)
and a bare state_dict, zip or legacy. binexport writes deployment formats,
not training state, so ``write`` refuses.
"""

from __future__ import annotations

from pathlib import Path

from binexport import _torchfile
from binexport.errors import InputError
from binexport.model import Model

NAME = "checkpoint"
SUFFIXES = (".pth.tar", ".pth", ".pt", ".th")


def sniff(head: bytes) -> bool:
    return _torchfile.is_torch_file(head)


def write(model: Model, **options: object) -> bytes:
    raise InputError("the 'checkpoint' format is read-only; write 'packed', 'bwn' or 'onnx'")


def read(path: str | Path, binarized: bool | None = None, strict: bool = True) -> Model:
    return _torchfile.load_model(path, binarized=binarized, strict=strict)
