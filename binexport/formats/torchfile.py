"""The one safe ``torch.load`` of a stranger's torch file, into a raw record every torch reader starts from.

A torch file (``torch.save``, zip or legacy pickle, or a zoo's one-member zip around one) is first scanned
inertly (:mod:`.torchscan`: declared sizes checked against the file, no code run) and then loaded with
``torch.load(weights_only=True)``, never a fallback: a checkpoint from the internet must not run code. Zip files
are memory-mapped so the optimizer state, half of a training checkpoint, is never paged in.

The result is a :class:`TorchRecord`: the container's layout, the tensors as numpy arrays (the DataParallel
``module.`` prefix removed, uint8 packed bits unpacked to one bool per sign) and what sat beside the
state_dict. It knows no architecture: the readers (:mod:`.checkpoint` and the layouts it dispatches to,
:mod:`.packed` and :mod:`.pytorchcv`) turn it into a Model, and :func:`breakdown` says where its bytes went.
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from binexport.errors import InputError
from binexport.fileio import check_input, read_head, shown
from binexport.formats import torchscan, zipwrap

#: ``Source.layout`` of a torch file: a dict with ``state_dict`` beside the optimizer, epoch... (training code).
LAYOUT_TRAINING = "training-checkpoint"
#: ``Source.layout`` of a bare state_dict (a flat dict of tensors).
LAYOUT_STATE_DICT = "state-dict"
#: ``Source.layout`` of a torch file holding uint8 packed bits: the ``packed`` file format.
LAYOUT_PACKED = "packed-checkpoint"
#: Tensor dtypes a state_dict of ours holds besides uint8 packed bits.
TENSOR_DTYPES = ("float16", "float32", "float64", "int64")

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"


@dataclass
class TorchRecord:
    """What a torch file holds, before any architecture is read into it.

    Attributes:
        path: the file read.
        size: its size in bytes.
        layout: :data:`LAYOUT_TRAINING`, :data:`LAYOUT_STATE_DICT` or :data:`LAYOUT_PACKED` (any uint8 tensor).
        arrays: every tensor by name, ``module.`` removed; a uint8 tensor unpacked along axis 1 to bool signs.
        bit_tensors: the names of the tensors stored as uint8 packed bits (``np.packbits`` order, axis 1).
        extra: the training checkpoint's entries beside ``state_dict`` (optimizer, epoch...); empty otherwise.
    """

    path: Path
    size: int
    layout: str
    arrays: dict[str, np.ndarray]
    bit_tensors: frozenset[str] = frozenset()
    extra: dict[str, Any] = field(default_factory=dict)


def is_torch_file(head: bytes) -> bool:
    """True for the first bytes of a ``torch.save`` file: a zip or a pickle (protocol 2+)."""
    return head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_PROTO)


def load(path: str | Path) -> TorchRecord:
    """Read a torch file safely into a :class:`TorchRecord`.

    Args:
        path: a ``torch.save`` file (zip or legacy) or a one-member zip around one (pytorchcv's ``.pth.zip``).

    Returns:
        The record: layout, tensors as numpy arrays, packed-bit names, the rest of a training checkpoint.

    Raises:
        InputError: not a torch file; sizes the file can't hold; Python objects other than tensors and plain
            containers; corrupt or truncated; not a dict of tensors (non-string keys, mixed ``module.``
            prefixes, an empty dict, tensors that are not plain dense CPU tensors of a known dtype).

    Example:
        >>> rec = load("wrn20-10-1bit-packed.pth.tar")               # doctest: +SKIP
        >>> rec.layout, len(rec.bit_tensors)                          # doctest: +SKIP
        ('packed-checkpoint', 18)
    """
    p = check_input(path)
    obj = _torch_load(p)
    layout, state, extra = _unwrap(obj, p)
    arrays, bits = _to_numpy(state, p)
    return TorchRecord(p, p.stat().st_size, layout, arrays, frozenset(bits), extra)


def breakdown(
    arrays: dict[str, np.ndarray],
    kinds: dict[str, str],
    file_size: int,
    *,
    binarized: bool,
    bit_tensors: frozenset[str] | set[str] = frozenset(),
    extra: dict[str, Any] | None = None,
) -> dict[str, int]:
    """Bytes of a torch file by role: the ``Source.breakdown`` of every torch layout.

    Args:
        arrays: the tensors by binexport name (packed bits already unpacked).
        kinds: ``Arch.kinds``: each tensor's role (``binary``, ``bn``, ``float``...).
        file_size: the file's size; what no tensor accounts for is ``other``.
        binarized: count latent float block convs as binarized weights (the model is read as 1-bit).
        bit_tensors: the names stored as uint8 packed bits (one bit per element in the file).
        extra: the training checkpoint's other entries: the tensors under ``optimizer`` are optimizer state.

    Returns:
        ``{"binarized weights", "float weights", "BN statistics", "optimizer state", "other"}`` in bytes.

    Example:
        >>> breakdown({"conv0": np.zeros((16, 3, 3, 3), np.float32)}, {"conv0": "float"}, 1000, binarized=False)
        {'binarized weights': 0, 'float weights': 1728, 'BN statistics': 0, 'optimizer state': 0, 'other': 0}
    """
    out = {"binarized weights": 0, "float weights": 0, "BN statistics": 0, "optimizer state": 0}
    for k, v in arrays.items():
        nbytes = v.size // 8 if k in bit_tensors else v.nbytes
        if kinds[k] == "binary" and binarized:
            out["binarized weights"] += nbytes
        elif kinds[k] == "bn":
            out["BN statistics"] += nbytes
        else:
            out["float weights"] += nbytes
    out["optimizer state"] = _tensor_bytes((extra or {}).get("optimizer"))
    out["other"] = max(0, file_size - sum(out.values()))
    return out


def _torch_load(p: Path) -> Any:
    head = read_head(p, 4)
    if not is_torch_file(head):
        raise InputError(
            f"{shown(p)}: not a PyTorch checkpoint (starts with {head!r}, expected a zip or pickle file "
            "written by torch.save)"
        )
    is_zip = head.startswith(_ZIP_MAGIC)
    with open(p, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        src: Any = f
        try:
            inner = zipwrap.wrapped_member(f, size) if is_zip else None
            if inner is not None:  # a zoo's one-member zip around the torch file (pytorchcv's <name>.pth.zip)
                src, size, is_zip = io.BytesIO(inner), len(inner), inner.startswith(_ZIP_MAGIC)
            torchscan.scan(src, size, is_zip)  # declared sizes vs the file, before torch allocates anything
        except InputError as e:
            raise InputError(f"{shown(p)}: {e}") from None
        src.seek(0)
        import torch

        # the file we checked, by its descriptor: the same bytes, and a name torch can open even where the
        # path is not UTF-8 (paths are bytes on POSIX; torch's C++ side wants text)
        by_fd = f"/proc/self/fd/{f.fileno()}"
        target: Any = by_fd if src is f and os.path.exists(by_fd) else src
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's deprecation chatter is not the user's business
                return torch.load(target, map_location="cpu", weights_only=True, mmap=is_zip and target is not src)
        except pickle.UnpicklingError as e:
            msg = str(e).strip().splitlines()
            why = next((m for m in msg if "Unsupported" in m or "global" in m.lower()), msg[0] if msg else "")
            raise InputError(
                f"{shown(p)}: refused: it holds Python objects other than tensors and plain containers "
                f"({why.strip()[:160]}); binexport loads with weights_only=True and never runs code "
                "from a file"
            ) from None
        except Exception as e:  # noqa: BLE001
            # Only torch's loader runs in this try, on bytes from a stranger; on corrupt input it raises
            # anything (AssertionError for one flipped bit, struct.error, UnicodeDecodeError, OverflowError...).
            # None of it is a bug of ours, all of it means "this file is not a readable checkpoint".
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            raise InputError(
                f"{shown(p)}: not a readable PyTorch checkpoint, truncated or corrupt ({type(e).__name__}: {first})"
            ) from None


def _unwrap(obj: Any, p: Path) -> tuple[str, dict[str, Any], dict[str, Any]]:
    if not isinstance(obj, dict):
        raise InputError(f"{p}: expected a dict (training checkpoint or state_dict), found {type(obj).__name__}")
    if "state_dict" in obj:
        state = obj["state_dict"]
        if not isinstance(state, dict):
            raise InputError(f"{p}: 'state_dict' holds a {type(state).__name__}, expected a dict of tensors")
        return LAYOUT_TRAINING, state, {k: v for k, v in obj.items() if k != "state_dict"}
    if not obj:
        raise InputError(f"{p}: the checkpoint is an empty dict")
    layout = LAYOUT_PACKED if any(_is_uint8(v) for v in obj.values()) else LAYOUT_STATE_DICT
    return layout, obj, {}


def _is_uint8(v: Any) -> bool:
    import torch

    return isinstance(v, torch.Tensor) and v.dtype == torch.uint8


def _to_numpy(state: dict[str, Any], p: Path) -> tuple[dict[str, np.ndarray], set[str]]:
    import torch

    keys = list(state)
    bad = [k for k in keys if not isinstance(k, str)]
    if bad:
        raise InputError(
            f"{p}: state_dict key {bad[0]!r} is a {type(bad[0]).__name__}, expected tensor names (strings)"
        )
    prefixed = [k for k in keys if isinstance(k, str) and k.startswith("module.")]
    if prefixed and len(prefixed) != len(keys):
        raise InputError(f"{p}: some keys start with 'module.' and some don't (e.g. {keys[0]!r}); expected all or none")
    arrays: dict[str, np.ndarray] = {}
    bits: set[str] = set()
    for key, t in state.items():
        name = key[len("module.") :] if prefixed else key
        refusal = _tensor_refusal(t, torch)
        if refusal:
            raise InputError(
                f"{p}: {key!r} is {refusal}; expected a tensor (plain, dense, contiguous, on the "
                "CPU), as torch.save writes for a state_dict"
            )
        if t.dtype == torch.uint8:
            if t.dim() != 4:
                raise InputError(f"{p}: packed tensor {key!r} has shape {tuple(t.shape)}, expected (out, in/8, kh, kw)")
            arrays[name] = np.unpackbits(t.numpy(), axis=1).view(bool)
            bits.add(name)
        elif str(t.dtype).replace("torch.", "") in TENSOR_DTYPES:
            arrays[name] = t.detach().numpy()
        else:
            raise InputError(
                f"{p}: {key!r} has dtype {str(t.dtype).replace('torch.', '')}, expected float32 "
                "(or uint8 packed bits, int64 counters)"
            )
    return arrays, bits


def _tensor_refusal(t: Any, torch: Any) -> str:
    """Why ``t`` is not a plain, dense, contiguous CPU tensor with memory of its own, or "" if it is one.

    weights_only=True admits meta, sparse, quantized and nested tensors, tensor
    subclasses, tensors whose rebuild state set attributes, and views with any
    strides; numpy can't take most of them, and a zero-stride view of one
    element can claim 300 MB. The architecture needs none of them.
    """
    if not isinstance(t, torch.Tensor):
        return f"a {type(t).__name__}"
    if type(t) not in (torch.Tensor, torch.nn.Parameter):
        return f"a tensor subclass ({type(t).__name__})"
    checks = (
        (lambda: t.is_meta, "a meta tensor (it has a shape but no data)"),
        (lambda: t.device.type != "cpu", f"a tensor on device {t.device}"),
        (
            lambda: t.layout != torch.strided,
            f"a {str(t.layout).replace('torch.', '')} tensor (sparse or other non-dense layout)",
        ),
        (lambda: t.is_quantized, "a quantized tensor"),
        (lambda: t.is_nested, "a nested tensor"),
        (lambda: t.is_conj() or t.is_neg(), "a tensor with a pending conjugate/negation bit"),
        (lambda: bool(getattr(t, "__dict__", None)), "a tensor with extra attributes set by its pickle"),
        (lambda: not t.is_contiguous(), f"a non-contiguous view (strides {tuple(t.stride())})"),
        (lambda: t.numel() == 0, f"empty (shape {tuple(t.shape)})"),
        (
            lambda: t.untyped_storage().nbytes() < (t.storage_offset() + t.numel()) * t.element_size(),
            "a view reaching past its storage",
        ),
    )
    for test, why in checks:
        if test():
            return why
    return ""


def _tensor_bytes(obj: Any) -> int:
    """Bytes of every tensor in nested containers; iterative and cycle-safe (a pickle can nest deep or loop)."""
    if obj is None:
        return 0
    import torch

    total, stack, seen = 0, [obj], set()
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        if isinstance(o, torch.Tensor):
            total += o.numel() * o.element_size() if o.layout == torch.strided and not o.is_meta else 0
        elif isinstance(o, dict):
            stack.extend(o.values())
        elif isinstance(o, (list, tuple)):
            stack.extend(o)
    return total
