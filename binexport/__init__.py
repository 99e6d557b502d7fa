"""binexport: deployment export and compression for 1-bit Wide ResNets (McDonnell, ICLR 2018).

The public API is loaded lazily so that ``binexport --help`` and torch-free
paths (the ``.bwn`` reader) never import torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = {
    "load": "binexport.api",
    "pack": "binexport.api",
    "inspect": "binexport.api",
    "PackReport": "binexport.api",
    "InspectReport": "binexport.api",
    "Model": "binexport.model",
    "Arch": "binexport.model",
    "BinaryWeight": "binexport.model",
    "binarize": "binexport.model",
    "BinexportError": "binexport.errors",
    "InputError": "binexport.errors",
    "FormatError": "binexport.errors",
    "CheckError": "binexport.errors",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'binexport' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
