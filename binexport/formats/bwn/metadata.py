"""The rules a ``.bwn`` header's metadata must follow to be read as a model (docs/FORMAT.md sections 4, 4.1, 13.1).

Kept apart from the reader so that ``__init__`` reads as the data flow: open, check, decode, build the Model.
"""

from __future__ import annotations

from binexport.errors import FormatError, InputError
from binexport.formats.bwn import container as box
from binexport.model import VARIANTS, WEIGHTS_DTYPES, Arch
from binexport.precision import HALF_KINDS

#: What metadata ``weights`` may say, and the dtype half-precision conv weights then have.
WEIGHTS_CHOICES = WEIGHTS_DTYPES
HALF_DTYPE = {"float16": "f16", "bfloat16": "bf16"}


def check_metadata(c: box.Container) -> Arch:
    """The architecture the metadata names, which MUST be the one the tensors form."""
    p, meta = c.path, c.metadata
    a = meta.get("architecture")
    if not isinstance(a, dict) or not all(type(a.get(k)) is int for k in ("depth", "num_classes")) \
            or not isinstance(a.get("widths"), list) or len(a["widths"]) != 3 \
            or not all(type(w) is int for w in a["widths"]):
        raise FormatError(f"{p}: metadata 'architecture' must give integer depth, num_classes and three widths "
                          "(field 'metadata.architecture')")
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
    except InputError as e:
        raise FormatError(f"{p}: {e}") from None
    said = (a["depth"], tuple(a["widths"]), a["num_classes"])
    if said != (arch.depth, arch.widths, arch.num_classes):
        raise FormatError(f"{p}: metadata says depth {said[0]}, widths {list(said[1])}, {said[2]} classes, but the "
                          f"tensors form a {arch.name} with widths {list(arch.widths)} and {arch.num_classes} classes "
                          "(field 'metadata.architecture')")
    kinds = arch.kinds
    wrong = [e.name for e in c.entries if e.dtype == "b1" and kinds[e.name] != "binary"]
    if wrong:
        raise FormatError(f"{p}: only block convs may be 1-bit, found b1 {', '.join(wrong[:3])} (field 'dtype')")
    return arch


def check_weights(c: box.Container, arch: Arch) -> str:
    """Metadata 'weights' (absent = float32), which MUST match the dtypes of the conv tensors."""
    p, w = c.path, c.metadata.get("weights", "float32")
    if w not in WEIGHTS_CHOICES:
        raise FormatError(f"{p}: metadata 'weights' is {w!r}, expected one of {', '.join(WEIGHTS_CHOICES)} "
                          "(field 'metadata.weights')")
    kinds = arch.kinds
    if w != "float32" and c.metadata.get("binarized") is not False:
        raise FormatError(f"{p}: metadata 'weights' is {w!r} but the model is binarised; half-precision weights "
                          "are for full-precision models (field 'metadata.weights')")
    want = HALF_DTYPE.get(w)
    for e in c.entries:
        conv = kinds[e.name] in HALF_KINDS and e.dtype != "b1"
        if (want is not None and conv and e.dtype != want) or (e.dtype == "bf16" and not (conv and want == "bf16")):
            raise FormatError(f"{p}: tensor {e.name!r} is {e.dtype} but metadata 'weights' is {w!r}: with "
                              f"'{w}' the convs are {want or 'f32 (or f16)'}, and bf16 holds bfloat16 conv weights "
                              "only (field 'dtype')")
    return w


def read_family(c: box.Container) -> str:
    """The architecture family: ``pytorch`` for flags 0 (no ``variant``), else the ``variant`` object's, checked.

    The variant's fields MUST be exactly its family's (binexport.arch.VARIANTS): a reader runs known networks
    only, and a field it would not honour is refused rather than ignored.
    """
    p, v = c.path, c.metadata.get("variant")
    if not c.flags & box.FLAG_VARIANT:
        if v is not None:
            raise FormatError(f"{p}: metadata has 'variant' but flags bit 0 is not set (field 'metadata.variant')")
        return "pytorch"
    if not isinstance(v, dict) or v.get("family") not in VARIANTS:
        raise FormatError(f"{p}: flags bit 0 says the network is a variant, but metadata 'variant' names no known "
                          f"family (expected one of {', '.join(VARIANTS)}) (field 'metadata.variant')")
    fam = str(v["family"])
    want = {"family": fam, **VARIANTS[fam]}
    if set(v) != set(want) or any(type(v[k]) is not type(want[k]) or v[k] != want[k] for k in want):
        raise FormatError(f"{p}: metadata 'variant' is {v}, expected exactly {want} for family {fam!r} "
                          "(field 'metadata.variant')")
    return fam


def _int(v: object) -> bool:
    return type(v) is int and v >= 0
