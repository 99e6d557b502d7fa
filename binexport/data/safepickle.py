"""A restricted unpickler for the CIFAR test files: numpy arrays and plain containers, nothing that runs code.

The CIFAR files are Python pickles made by strangers: a plain ``pickle.load`` would run whatever code they
name. :func:`unpickle` resolves only the globals a numpy array needs (``ndarray`` via ``_reconstruct``,
``dtype``, ``_frombuffer``, ``_codecs.encode(str, 'latin1')``), each guarded so it allocates no more than the
file holds and builds no object arrays; every other global, and every persistent id, is refused.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

from binexport.errors import InputError


def _numpy_core() -> tuple[Any, Any]:
    """numpy's private pickle helpers (``multiarray``, ``numeric``) under the installed numpy's name
    (``numpy._core`` since 2.0, ``numpy.core`` before)."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    return multiarray, numeric


class _NdarrayClass:
    """Stands for ``numpy.ndarray`` in a pickle: only ``_reconstruct`` may use it; calling it would allocate
    any declared shape (``ndarray((100000, 3072))`` from a 170-byte file), so calling it is refused."""

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        raise Refused("calling numpy.ndarray directly (it allocates any declared shape) is not allowed")


_NDARRAY = _NdarrayClass()


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> np.ndarray:
    """numpy's ``_reconstruct`` for ndarray only: it makes an empty array that BUILD then fills from bytes in
    the file (numpy checks their length), so nothing is allocated beyond what the file holds."""
    multiarray, _ = _numpy_core()

    if cls is not _NDARRAY:
        raise Refused("_reconstruct of anything but numpy.ndarray is not allowed")
    if shape not in ((0,), [0], 0):
        raise Refused(f"_reconstruct with shape {str(shape)[:40]} is not allowed (numpy pickles use (0,))")
    return multiarray._reconstruct(np.ndarray, (0,), typecode)  # numpy private, no stub


def _dtype(*args: Any) -> np.dtype:
    """``numpy.dtype`` for plain numeric types; object dtypes would let a pickle put objects in an array."""
    dt = np.dtype(*args)
    if dt.hasobject or dt.itemsize > 64:
        raise Refused(f"dtype {dt} is not allowed in CIFAR data")
    return dt


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """numpy's protocol-5 ``_frombuffer``: a view of bytes in the file, so bounded by it."""
    _, numeric = _numpy_core()

    if not isinstance(buf, (bytes, bytearray, memoryview)) or not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise Refused("_frombuffer is allowed for plain bytes and numeric dtypes only")
    return numeric._frombuffer(buf, dtype, shape, order)  # numpy private, no stub


def _latin1(text: Any, encoding: Any = "latin1") -> bytes:
    """``_codecs.encode(str, 'latin1')``, as Python 3 pickles bytes at protocols 0-2 (CIFAR files re-saved by
    Python 3 hold their image bytes this way). Safe to allow in exactly this form: a pure function of a string
    already in the file, giving bytes of the same length; no I/O, no other codec (codecs can be arbitrary
    code, e.g. a registered one), no other argument types."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise Refused(
            f"_codecs.encode is allowed only as (str, 'latin1'), got ({type(text).__name__}, {str(encoding)[:20]!r})"
        )
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The only globals a CIFAR pickle needs: numpy's array and dtype reconstruction, guarded (see each)."""
    out: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): _dtype,
        ("_codecs", "encode"): _latin1,
    }
    for pkg in ("numpy.core", "numpy._core"):  # Python 2 / numpy 1 files name numpy.core
        out[(pkg + ".multiarray", "_reconstruct")] = _reconstruct
        out[(pkg + ".numeric", "_frombuffer")] = _frombuffer
    return out


class Refused(pickle.UnpicklingError):
    """A global or persistent id that a CIFAR file has no business asking for."""


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Builds dicts, lists, strings, numbers and numpy arrays; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        obj = _allowed_globals().get((module, name))
        if obj is None:
            raise Refused(f"global {str(module)[:60]}.{str(name)[:60]} is not allowed")
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise Refused("persistent ids are not allowed")


def unpickle(raw: bytes, where: str) -> Any:
    """The object a CIFAR pickle holds, built by :class:`NumpyOnlyUnpickler` (no code from the file runs).

    Args:
        raw: the pickle's bytes (already bounded by the caller).
        where: the file or URL, for messages.

    Returns:
        dicts, lists, strings, numbers and numpy arrays of plain numeric dtypes; the caller checks the fields.

    Raises:
        InputError: the pickle asks for any other global or a persistent id, or is truncated or corrupt.

    Example:
        >>> unpickle(pickle.dumps({"labels": [1, 2]}), "x")
        {'labels': [1, 2]}
    """
    try:
        obj = NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Refused as e:
        raise InputError(
            f"{where}: refused: the pickle asks for code, not data ({e}); a CIFAR test file holds only "
            "numpy arrays and lists, so this file is not one (or was tampered with)"
        ) from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        MemoryError,
        OverflowError,
        RecursionError,
        LookupError,
    ) as e:
        # only the unpickler and the guarded constructors above run here, on a stranger's bytes
        raise InputError(
            f"{where}: not a readable CIFAR pickle, truncated or corrupt ({type(e).__name__}: "
            f"{str(e)[:120]}); delete it and fetch it again (--download)"
        ) from None
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        raise InputError(f"{where}: object arrays are not CIFAR data")
    return obj
