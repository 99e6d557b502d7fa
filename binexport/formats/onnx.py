"""ONNX export (placeholder until the ONNX issue lands: the helper replaces this module)."""

from __future__ import annotations

from pathlib import Path

from binexport.errors import InputError
from binexport.model import Model

NAME = "onnx"
SUFFIXES = (".onnx",)


def sniff(head: bytes) -> bool:
    return False


def write(model: Model, **options: object) -> bytes:
    raise InputError("ONNX export is not available yet")


def read(path: str | Path, **options: object) -> Model:
    raise InputError("ONNX files are export targets; binexport does not read them back into a model")
