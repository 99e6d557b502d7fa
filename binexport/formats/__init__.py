"""The explicit registry of file formats.

Every format module has the same small surface: ``NAME``, ``SUFFIXES``,
``sniff(head) -> bool`` (recognise a file from its first bytes),
``write(model, **options) -> bytes`` and ``read(path, **options) -> Model``.
Formats never import each other; they meet only in the in-memory model.
"""

from __future__ import annotations

from types import ModuleType

from binexport.errors import InputError
from binexport.formats import bwn, checkpoint, onnx, packed

_FORMATS: tuple[ModuleType, ...] = (checkpoint, packed, bwn, onnx)


def names() -> list[str]:
    return [f.NAME for f in _FORMATS]


def get(name: str) -> ModuleType:
    for f in _FORMATS:
        if f.NAME == name:
            return f
    raise InputError(f"unknown format {name!r}; valid formats: {', '.join(names())}")


def detect(head: bytes) -> ModuleType | None:
    """The first format that recognises these leading bytes, or None."""
    for f in _FORMATS:
        if f.sniff(head):
            return f
    return None
