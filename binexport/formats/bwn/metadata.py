"""The rules a ``.bwn`` header's metadata must follow to be read as a model (docs/FORMAT.md sections 4, 4.1, 13.1).

Kept apart from the reader so that ``__init__`` reads as the data flow: open, check, decode, build the Model.
"""

from __future__ import annotations

import math

import numpy as np

from binexport.errors import FormatError, InputError
from binexport.formats.bwn import container as box
from binexport.model import VARIANTS, WEIGHTS_DTYPES, Arch, BinaryWeight
from binexport.precision import HALF_KINDS

#: What metadata ``weights`` may say, and the dtype half-precision conv weights then have.
WEIGHTS_CHOICES = WEIGHTS_DTYPES
HALF_DTYPE = {"float16": "f16", "bfloat16": "bf16"}


#: Metadata ``model`` of a model file (FORMAT.md section 4); a file without the key is a tensor container.
MODEL = "WRN_McDonnell"
#: Float dtypes a model's float tensors may have (bf16 only as section 13.1 allows); counters are integers.
FLOAT_DTYPES = ("f16", "f32", "f64", "bf16")
COUNTER_DTYPES = ("i64", "i32")
#: Positions ``zero_positions`` may list, in all (FORMAT.md section 4.2): 8 bytes of text or less each, so the
#: list stays under half the header's 1 MiB; a model with more exact zeros keeps only their count.
MAX_ZERO_POSITIONS = 65536


def check_metadata(c: box.Container) -> Arch:
    """The architecture the metadata names, which MUST be the one the tensors form (FORMAT.md section 4)."""
    p, meta = c.path, c.metadata
    if "model" not in meta:
        raise FormatError(
            f"{p}: not a model file: its metadata has no 'model' key, so it is a plain tensor "
            "container (field 'metadata.model'); read its tensors with bwn.read_tensors"
        )
    if meta["model"] != MODEL:
        raise FormatError(
            f"{p}: metadata 'model' is {meta['model']!r:.80}, expected {MODEL!r} (field 'metadata.model')"
        )
    a = meta.get("architecture")
    if (
        not isinstance(a, dict)
        or not all(type(a.get(k)) is int for k in ("depth", "num_classes"))
        or not isinstance(a.get("widths"), list)
        or len(a["widths"]) != 3
        or not all(type(w) is int for w in a["widths"])
    ):
        raise FormatError(
            f"{p}: metadata 'architecture' must give integer depth, num_classes and three widths "
            "(field 'metadata.architecture')"
        )
    if not _int(meta.get("zero_weights")):
        raise FormatError(f"{p}: metadata 'zero_weights' must be an integer >= 0 (field 'metadata.zero_weights')")
    if type(meta.get("binarized")) is not bool:
        raise FormatError(f"{p}: metadata 'binarized' must be true or false (field 'metadata.binarized')")
    user = meta.get("user", {})
    if not isinstance(user, dict) or not all(isinstance(v, str) for v in user.values()):
        raise FormatError(f"{p}: metadata 'user' must map strings to strings (field 'metadata.user')")
    family = read_family(c)
    try:
        arch = Arch.infer({e.name: e.shape for e in c.entries}, family)
    except InputError as err:
        raise FormatError(f"{p}: {err}") from None
    said = (a["depth"], tuple(a["widths"]), a["num_classes"])
    if said != (arch.depth, arch.widths, arch.num_classes):
        raise FormatError(
            f"{p}: metadata says depth {said[0]}, widths {list(said[1])}, {said[2]} classes, but the "
            f"tensors form a {arch.name} with widths {list(arch.widths)} and {arch.num_classes} classes "
            "(field 'metadata.architecture')"
        )
    kinds = arch.kinds
    wrong = [e.name for e in c.entries if e.dtype == "b1" and kinds[e.name] != "binary"]
    if wrong:
        where = "block convs" + (" and conv0/conv_last" if arch.first_conv_binary else "")
        raise FormatError(
            f"{p}: only {where} may be 1-bit in a {arch.label}, found b1 {', '.join(wrong[:3])} (field 'dtype')"
        )
    for e in c.entries:
        want = COUNTER_DTYPES if e.name.endswith(".num_batches_tracked") else FLOAT_DTYPES
        if e.dtype != "b1" and e.dtype not in want:
            raise FormatError(f"{p}: tensor {e.name!r} is {e.dtype}, expected one of {', '.join(want)} (field 'dtype')")
    # pytorchcv's 32bit models are its 1-bit network run in full precision (FORMAT.md section 4.1): false allowed
    if (
        arch.family not in ("pytorch", "pytorchcv")
        and (arch.first_conv_binary or arch.head == "binary")
        and meta["binarized"] is not True
    ):
        raise FormatError(
            f"{p}: a {arch.label} has 1-bit conv0/conv_last, so metadata 'binarized' must be true "
            "(field 'metadata.binarized')"
        )
    most = sum(math.prod(s.shape) for s in arch.specs() if s.kind == "binary")
    if meta["zero_weights"] > most:
        raise FormatError(
            f"{p}: metadata 'zero_weights' is {meta['zero_weights']}, more than the {most} weights "
            "that are binarised in this architecture (field 'metadata.zero_weights')"
        )
    return arch


def check_zero_positions(c: box.Container, arch: Arch) -> dict[str, np.ndarray]:
    """Metadata ``zero_positions`` (FORMAT.md section 4.2): where the ``zero_weights`` exact zeros are, by tensor.

    Absent: ``{}`` (the zeros, if any, are read as +1, as before the key existed). Present: an object naming
    1-bit tensors of this file, each with its flat indices, strictly increasing and in range, and together
    exactly ``zero_weights`` of them, at most :data:`MAX_ZERO_POSITIONS`.
    """
    p, meta = c.path, c.metadata
    if "zero_positions" not in meta:
        return {}
    zp, total = meta["zero_positions"], meta["zero_weights"]
    field = "(field 'metadata.zero_positions')"
    if not isinstance(zp, dict) or meta["binarized"] is not True:
        raise FormatError(f"{p}: metadata 'zero_positions' must be an object, in a binarised model only {field}")
    counts = {e.name: e.count for e in c.entries if e.dtype == "b1"}
    out, seen = {}, 0
    for name, where in zp.items():
        if name not in counts:
            raise FormatError(f"{p}: metadata 'zero_positions' names {name!r}, which is no 1-bit tensor {field}")
        n = counts[name]
        ok = isinstance(where, list) and 1 <= len(where) <= MAX_ZERO_POSITIONS - seen
        ok = ok and all(type(i) is int and 0 <= i < n for i in where)
        ok = ok and all(a < b for a, b in zip(where, where[1:], strict=False))
        if not ok:
            raise FormatError(
                f"{p}: metadata 'zero_positions' of {name!r} must be 1 to {MAX_ZERO_POSITIONS} (in all) "
                f"strictly increasing integers in 0..{n - 1} {field}"
            )
        seen += len(where)
        out[name] = np.asarray(where, dtype=np.int64)
    if seen != total:
        raise FormatError(
            f"{p}: metadata 'zero_positions' lists {seen} positions but 'zero_weights' is {total}; "
            f"where given, the list is complete {field}"
        )
    return out


def zero_positions(binary: dict[str, BinaryWeight], zero_weights: int) -> dict[str, list[int]] | None:
    """What a writer stores as ``zero_positions``: every exact zero's index, or None (key not written)
    where there are none, where the model doesn't know them all, or more than :data:`MAX_ZERO_POSITIONS`."""
    where = {k: b.zeros.tolist() for k, b in binary.items() if b.zeros.size}
    n = sum(len(v) for v in where.values())
    return where if 0 < n == zero_weights and n <= MAX_ZERO_POSITIONS else None


def check_weights(c: box.Container, arch: Arch) -> str:
    """Metadata 'weights' (absent = float32), which MUST match the dtypes of the conv tensors."""
    p, w = c.path, c.metadata.get("weights", "float32")
    if w not in WEIGHTS_CHOICES:
        raise FormatError(
            f"{p}: metadata 'weights' is {w!r}, expected one of {', '.join(WEIGHTS_CHOICES)} (field 'metadata.weights')"
        )
    kinds = arch.kinds
    if w != "float32" and c.metadata.get("binarized") is not False:
        raise FormatError(
            f"{p}: metadata 'weights' is {w!r} but the model is binarised; half-precision weights "
            "are for full-precision models (field 'metadata.weights')"
        )
    want = HALF_DTYPE.get(w)
    for e in c.entries:
        conv = kinds[e.name] in HALF_KINDS and e.dtype != "b1"
        if (want is not None and conv and e.dtype != want) or (e.dtype == "bf16" and not (conv and want == "bf16")):
            raise FormatError(
                f"{p}: tensor {e.name!r} is {e.dtype} but metadata 'weights' is {w!r}: with "
                f"'{w}' the convs are {want or 'f32 (or f16)'}, and bf16 holds bfloat16 conv weights "
                "only (field 'dtype')"
            )
    return w


def read_family(c: box.Container) -> str:
    """The architecture family: ``pytorch`` for flags 0 (no ``variant``), else the ``variant`` object's, checked.

    The variant's fields MUST be exactly its family's (binexport.arch.VARIANTS): a reader runs known networks
    only, and a field it would not honour is refused rather than ignored.
    """
    p, v = c.path, c.metadata.get("variant")
    if not c.flags & box.FLAG_VARIANT:
        if "variant" in c.metadata:  # whatever its value, null included (FORMAT.md section 2)
            raise FormatError(
                f"{p}: metadata has 'variant' ({v!r:.40}) but flags bit 0 is not set: a file of the PyTorch "
                "port has no 'variant' key at all (field 'metadata.variant')"
            )
        return "pytorch"
    if not isinstance(v, dict) or v.get("family") not in VARIANTS:
        raise FormatError(
            f"{p}: flags bit 0 says the network is a variant, but metadata 'variant' names no known "
            f"family (expected one of {', '.join(VARIANTS)}) (field 'metadata.variant')"
        )
    fam = str(v["family"])
    want = {"family": fam, **VARIANTS[fam]}
    if set(v) != set(want) or not all(same_value(v[k], want[k]) for k in want):
        raise FormatError(
            f"{p}: metadata 'variant' is {str(v)[:200]}, expected exactly {want} for family {fam!r} (field 'metadata.variant')"
        )
    return fam


def same_value(got: object, want: object) -> bool:
    """JSON values equal as section 4.1 compares them: numbers by value (``0`` is ``0.0``, ``1e-05`` is ``1e-5``:
    the binary64 nearest each decimal), booleans and strings exactly (``true`` is not ``1``)."""

    def number(x: object) -> bool:
        return type(x) in (int, float)

    if number(want):
        return number(got) and got == want  # Python compares int and float exactly, without overflow
    return type(got) is type(want) and got == want


def _int(v: object) -> bool:
    return type(v) is int and v >= 0
