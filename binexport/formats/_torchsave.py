"""Safe reading of the three torch.save layouts users have, into the in-memory model.

Only ``torch.load(weights_only=True)`` is used, never a fallback: a checkpoint
from the internet must not run code. Zip files are memory-mapped so the
optimizer state, half of a training checkpoint, is never paged in.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from binexport._fileio import check_input, read_head, shown
from binexport.errors import InputError
from binexport.formats import _torchscan, _zipwrap
from binexport.model import Arch, BinaryWeight, Model, Source

#: Layouts of torch files (``Source.layout``); a packed layout is the ``packed`` file format, the others ``checkpoint``.
TRAINING = "training-checkpoint"
STATE_DICT = "state-dict"
PACKED = "packed-checkpoint"

_ZIP_MAGIC = b"PK\x03\x04"
_BLOCK_CONV = re.compile(r"group\d+\.block\d+\.conv[01]")
_PICKLE_PROTO = b"\x80"
#: log.txt is read up to this size; a training log of 160 epochs is a few hundred KB.
_MAX_LOG_BYTES = 16 * 2**20
_MAX_LOG_LINE = 64 * 2**10
_MAX_JSON_DEPTH = 32


def is_torch_file(head: bytes) -> bool:
    return head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_PROTO)


def load_model(path: str | Path, binarized: bool | None = None, strict: bool = True) -> Model:
    """Read a training checkpoint, bare state_dict or packed checkpoint.

    ``binarized`` overrides what ``log.txt`` says. Where neither tells and
    ``strict`` is set, refuse rather than guess; otherwise read as full precision
    and record ``metadata['binarized_from'] = 'unknown'``.
    """
    p = check_input(path)
    obj = _torch_load(p)
    layout, state, extra = _unwrap(obj, p)
    arrays, packed_names = _to_numpy(state, layout, p)
    if not packed_names:
        from binexport.formats import pytorchcv  # noqa: PLC0415 (pytorchcv's layout has a room of its own)

        if pytorchcv.matches(arrays):
            return pytorchcv.to_model(p, arrays, binarized, strict, p.stat().st_size)
    if packed_names:
        layout = PACKED  # uint8 bits are packed whatever wraps them; binarising them again would corrupt them
    bad = sorted(k for k in packed_names if not _BLOCK_CONV.fullmatch(k))  # before shapes: unpacking changed them
    if bad:
        raise InputError(
            f"{p}: uint8 (packed) tensors are only valid for block convs (group*.block*.conv0/conv1), "
            f"found {', '.join(bad[:3])}"
        )
    arch = Arch.infer({k: v.shape for k, v in arrays.items()})
    kinds = arch.kinds
    size = p.stat().st_size
    if layout == PACKED:
        source = Source("packed", str(p), size, "", _breakdown(arrays, packed_names, kinds, extra, size, True), layout)
        missing = [k for k, kind in kinds.items() if kind == "binary" and k not in packed_names]
        if missing:
            raise InputError(
                f"{p}: packed checkpoint has float block convs ({', '.join(missing[:3])}); "
                "every group*.block*.conv* must be uint8 packed bits"
            )
        floats = {k: v for k, v in arrays.items() if k not in packed_names}
        binary = {k: BinaryWeight(arrays[k]) for k in packed_names}
        return Model(arch, True, floats, binary, 0, source, {"binarized_from": "packed layout"})
    mode, told_by = _binarized_mode(p, binarized)
    if mode is None:
        if strict:
            raise InputError(
                f"{p}: can't tell whether this model was trained with --binarize: the checkpoint doesn't say and "
                "there is no log.txt beside it; pass --binarized or --full-precision"
            )
        mode, told_by = False, "unknown"
    source = Source("checkpoint", str(p), size, "", _breakdown(arrays, packed_names, kinds, extra, size, mode), layout)
    model = Model(arch, False, arrays, {}, 0, source, {"binarized_from": told_by})
    if mode:
        from binexport.model import binarize  # noqa: PLC0415

        model = binarize(model)
    return model


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
            inner = _zipwrap.wrapped_member(f, size) if is_zip else None
            if inner is not None:  # a zoo's one-member zip around the torch file (pytorchcv's <name>.pth.zip)
                src, size, is_zip = io.BytesIO(inner), len(inner), inner.startswith(_ZIP_MAGIC)
            _torchscan.scan(src, size, is_zip)  # declared sizes vs the file, before torch allocates anything
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
        return TRAINING, state, {k: v for k, v in obj.items() if k != "state_dict"}
    if not obj:
        raise InputError(f"{p}: the checkpoint is an empty dict")
    layout = PACKED if any(_is_uint8(v) for v in obj.values()) else STATE_DICT
    return layout, obj, {}


def _is_uint8(v: Any) -> bool:
    import torch

    return isinstance(v, torch.Tensor) and v.dtype == torch.uint8


def _to_numpy(state: dict[str, Any], layout: str, p: Path) -> tuple[dict[str, np.ndarray], set[str]]:
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
    packed: set[str] = set()
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
            packed.add(name)
        elif str(t.dtype).replace("torch.", "") in _DTYPES_NAMES:
            arrays[name] = t.detach().numpy()
        else:
            raise InputError(
                f"{p}: {key!r} has dtype {str(t.dtype).replace('torch.', '')}, expected float32 "
                "(or uint8 packed bits, int64 counters)"
            )
    return arrays, packed


_DTYPES_NAMES = ("float16", "float32", "float64", "int64")


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


def _breakdown(
    arrays: dict[str, np.ndarray],
    packed: set[str],
    kinds: dict[str, str],
    extra: dict[str, Any],
    file_size: int,
    binarised: bool,
) -> dict[str, int]:
    """Bytes of the file by role; latent float block convs count as binarised weights when binarised."""
    out = {"binarised weights": 0, "float weights": 0, "BN statistics": 0, "optimizer state": 0}
    for k, v in arrays.items():
        nbytes = v.size // 8 if k in packed else v.nbytes
        if kinds[k] == "binary" and binarised:
            out["binarised weights"] += nbytes
        elif kinds[k] == "bn":
            out["BN statistics"] += nbytes
        else:
            out["float weights"] += nbytes
    out["optimizer state"] = _tensor_bytes(extra.get("optimizer"))
    out["other"] = max(0, file_size - sum(out.values()))
    return out


def _tensor_bytes(obj: Any) -> int:
    """Bytes of every tensor in nested containers; iterative and cycle-safe (a pickle can nest deep or loop)."""
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


def _binarized_mode(p: Path, override: bool | None) -> tuple[bool | None, str]:
    """What log.txt beside the checkpoint says about --binarize, unless overridden."""
    if override is not None:
        return override, "option"
    log = p.parent / "log.txt"
    if not log.is_file():
        return None, "unknown"
    seen: set[bool] = set()
    try:
        if not log.stat().st_size <= _MAX_LOG_BYTES:
            raise InputError(
                f"{shown(log)}: larger than {_MAX_LOG_BYTES >> 20} MiB, not a training log; pass "
                "--binarized or --full-precision"
            )
        with open(log, "rb") as f:
            raw = f.read(_MAX_LOG_BYTES + 1)
    except OSError as e:
        raise InputError(
            f"{shown(log)}: can't be read ({e.strerror or e}); pass --binarized or --full-precision"
        ) from None
    for line in raw[:_MAX_LOG_BYTES].decode("utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line.startswith("{") or len(line) > _MAX_LOG_LINE or _json_depth(line) > _MAX_JSON_DEPTH:
            continue  # not a log entry of the training code (they are flat dicts of numbers)
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(entry, dict) and isinstance(entry.get("binarize"), bool):
            seen.add(entry["binarize"])
    if len(seen) > 1:
        raise InputError(f'{log}: lines disagree on "binarize"; pass --binarized or --full-precision')
    if not seen:
        return None, "unknown"
    return seen.pop(), "log.txt"


def _json_depth(line: str) -> int:
    """Deepest nesting of brackets in a line (strings ignored), so json.loads never recurses deep."""
    depth = deepest = 0
    in_str = escaped = False
    for c in line:
        if in_str:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest
