"""The .bwn format (placeholder until the .bwn issue lands: the helper replaces this module)."""

from __future__ import annotations

from pathlib import Path

from binexport.errors import InputError
from binexport.model import Model

NAME = "bwn"
SUFFIXES = (".bwn",)


def sniff(head: bytes) -> bool:
    return False


def write(model: Model, **options: object) -> bytes:
    raise InputError(".bwn is not available yet")


def read(path: str | Path, **options: object) -> Model:
    raise InputError(".bwn reading is not available yet")
