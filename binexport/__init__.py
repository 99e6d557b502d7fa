"""binexport: deployment export and compression for 1-bit Wide ResNets (McDonnell, ICLR 2018).

The public API, one function per verb over one in-memory :class:`Model`:

- :func:`load` reads any model file (detected from its content) into a Model;
- :func:`inspect`, :func:`pack`, :func:`export_onnx`, :func:`verify`, :func:`bench` are the CLI's verbs;
- errors are :class:`InputError` (bad input), :class:`FormatError` (a broken ``.bwn``) and
  :class:`CheckError` (a failed check), all :class:`BinexportError`.

Everything is imported lazily, so ``binexport --help`` and torch-free paths
(the ``.bwn`` reader) never import torch.
"""

from __future__ import annotations

import importlib
from typing import Any


def _version() -> str:
    """The installed distribution's version: pyproject.toml is the one place it is written."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("binexport")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


__version__ = _version()

_API = {
    "load": "binexport.formats",
    "inspect": "binexport.verbs.inspect",
    "InspectReport": "binexport.verbs.inspect",
    "pack": "binexport.verbs.pack",
    "PackReport": "binexport.verbs.pack",
    "export_onnx": "binexport.verbs.export",
    "OnnxReport": "binexport.verbs.export",
    "verify": "binexport.verbs.verify",
    "VerifyReport": "binexport.verbs.verify",
    "bench": "binexport.verbs.bench",
    "BenchReport": "binexport.verbs.bench",
    "predict": "binexport.verbs.predict",
    "PredictReport": "binexport.verbs.predict",
    "bundle": "binexport.verbs.bundle",
    "BundleReport": "binexport.verbs.bundle",
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
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
