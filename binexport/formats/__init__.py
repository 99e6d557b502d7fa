"""The file formats binexport reads and writes, one room each, behind one typed registry.

Every format is a :class:`Format` record: its name, the suffixes of its files,
how to recognise it from its first bytes, and the ``read`` / ``write`` /
``describe`` functions it has (a format that can't do one leaves it ``None``).
Formats meet only in the in-memory :class:`~binexport.model.Model`; what they
share sits below them (:mod:`.torchfile`, the one safe ``torch.load``;
:mod:`.runfolder`, a training run folder and its ``log.txt``). The one
dispatch between rooms runs down from a container to its layouts: the
``checkpoint`` reader hands a torch file to the ``packed`` or ``pytorchcv``
room. Files are always detected from their content, never their name.

Vocabulary, used in the registry, in ``Source.format``, in every JSON report and on the CLI:

- a *file format* (``checkpoint``, ``packed``, ``bwn``, ``mat``, ``onnx``, ``ort``, ``pytorchcv``, ``safetensors``);
- a torch file's *layout* (``Source.layout``: ``training-checkpoint``, ``state-dict``, ``packed-checkpoint``,
  ``pytorchcv-state-dict``), what the reader found inside the container;
- a *weight encoding* (``1-bit``, ``float32``, ``float16``, ``bfloat16``, ``int8``:
  :data:`binexport.check.WEIGHT_ENCODINGS`), how a model's weights are held, whatever the file;
- a ``.bwn`` *tensor encoding* (``raw``, ``packed``, ``rans``, ``rans-ref``, ``f32-rans``, ``planes``), how one
  tensor's bytes sit in a ``.bwn`` file.

*Packed bits* (signs 8 per byte, ``np.packbits`` order) is the storage behind the ``packed`` file format, the
``.bwn`` ``packed`` encoding and safetensors' U8 tensors; ``packed`` alone names the file format, or the
``.bwn`` encoding after ``--encoding``. 1-bit ONNX weights are ``1-bit`` (``packed`` is its old CLI alias).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from binexport.errors import InputError
from binexport.fileio import check_input, read_head
from binexport.formats import bwn, checkpoint, mat, onnx, ort, packed, pytorchcv, runfolder, safetensors, torchfile
from binexport.model import Model


@dataclass(frozen=True)
class Format:
    """One file format: what it is called, how to recognise it, and what binexport can do with it.

    ``sniff`` is None for a format that shares its container with another (a
    packed checkpoint and a pytorchcv state_dict are torch files: the
    ``checkpoint`` reader claims them, hands them to their room, and the Model
    says which in ``Source.format`` and ``Source.layout``).
    """

    name: str
    suffixes: tuple[str, ...]
    default_suffix: str
    summary: str
    sniff: Callable[[bytes], bool] | None = None
    read: Callable[..., Model] | None = None
    write: Callable[..., bytes] | None = None
    describe: Callable[..., dict[str, object]] | None = None


REGISTRY: tuple[Format, ...] = (
    Format(
        "checkpoint",
        (".pth.tar", ".pth", ".pt", ".th", ".tar"),
        ".pth.tar",
        "a PyTorch checkpoint of the training code (training checkpoint or bare state_dict, zip or legacy)",
        sniff=torchfile.is_torch_file,
        read=checkpoint.read,
    ),
    Format(
        "packed",
        (".packed.pth.tar",),
        ".packed.pth.tar",
        "the published packed checkpoint: uint8 packbits of every block conv, the rest as it was",
        read=packed.read,
        write=packed.write,
    ),
    Format(
        "bwn",
        (".bwn",),
        ".bwn",
        "binexport's own specified, checksummed, torch-free format (docs/FORMAT.md)",
        sniff=bwn.sniff,
        read=bwn.read,
        write=bwn.write,
        describe=bwn.describe,
    ),
    Format(
        "mat",
        (".mat",),
        ".mat",
        "M. D. McDonnell's own 1-bit WRNs: the MATLAB/MatConvNet and tf.keras level-5 MAT files (read only)",
        sniff=mat.sniff,
        read=mat.read,
    ),
    Format(
        "onnx",
        (".onnx",),
        ".onnx",
        "an ONNX graph for stock ONNX Runtime (export only)",
        sniff=onnx.sniff,
        write=onnx.write,
    ),
    Format(
        "ort",
        (".ort",),
        ".ort",
        "ONNX Runtime's own format for ORT Mobile (to-onnx --ort-format writes it; run on ONNX Runtime only)",
        sniff=ort.sniff,
    ),
    Format(
        "pytorchcv",
        (".pth",),
        ".pth",
        "pytorchcv's pretrained WRN-1bit state_dicts (wrn20_10_1bit_*, wrn20_10_32bit_*), read only; a torch "
        "file, so the checkpoint reader claims it and names it from its keys",
        read=pytorchcv.read,
    ),
    Format(
        "safetensors",
        (".safetensors",),
        ".safetensors",
        "safetensors (no pickle): 1-bit weights as U8 packed bits, floats F32/F16/BF16, all else in __metadata__ "
        "(docs/safetensors.md)",
        sniff=safetensors.sniff,
        read=safetensors.read,
        write=safetensors.write,
    ),
)

#: Every format name, in registry order.
NAMES: tuple[str, ...] = tuple(f.name for f in REGISTRY)
#: Formats ``binexport pack`` writes.
PACK_FORMATS: tuple[str, ...] = ("packed", "bwn", "safetensors")
#: Pack formats that hold a full-precision model as floats (``weights=float32|float16|bfloat16``).
FLOAT_PACK_FORMATS: tuple[str, ...] = ("bwn", "safetensors")


def get(name: str) -> Format:
    """The format called ``name``.

    Raises:
        InputError: for an unknown name; the message lists the valid ones.
    """
    for f in REGISTRY:
        if f.name == name:
            return f
    raise InputError(f"unknown format {name!r}; valid formats: {', '.join(NAMES)}")


def detect(head: bytes) -> Format | None:
    """The format whose magic these leading bytes carry, or None."""
    for f in REGISTRY:
        if f.sniff is not None and f.sniff(head):
            return f
    return None


def detect_file(path: str | Path) -> tuple[Path, Format]:
    """A checked input path and its format, from its first 64 bytes.

    Raises:
        InputError: the file is missing, empty, a folder, or of no known format.
    """
    p = check_input(path)
    head = read_head(p, 64)
    if not head:
        raise InputError(f"{p}: the file is empty (0 bytes); expected a checkpoint")
    fmt = detect(head)
    if fmt is None:
        raise InputError(
            f"{p}: unrecognised file (starts with {head[:8]!r}); expected a PyTorch checkpoint, "
            f"a packed checkpoint, a .bwn or .safetensors file or one of McDonnell's .mat models"
        )
    return p, fmt


def resolve(path: str | Path) -> Path:
    """A model file as given; a training run folder (the training code's ``--save`` folder) as its one model file.

    In a folder, the training code's own ``checkpoint.pth.tar`` is taken first; otherwise the one file whose
    content a reader recognises (hidden files and ONNX files aside): :func:`.runfolder.resolve` with this
    registry's sniffs. The ``log.txt`` beside it then says whether the run was binarized, as for the file itself.

    Args:
        path: a file, or a folder holding exactly one model file.

    Returns:
        The file to read (``path`` itself where it is not a folder; missing files are left to the reader).

    Raises:
        InputError: a folder with no model file, or several (they are named).

    Example:
        >>> binexport.formats.resolve("logs/WRN-20-10-1bit_1234")       # doctest: +SKIP
        PosixPath('logs/WRN-20-10-1bit_1234/checkpoint.pth.tar')
    """
    return runfolder.resolve(path, _readable)


def _readable(head: bytes) -> bool:
    """True for the leading bytes of a file some reader here reads (an ONNX file is written, not read)."""
    fmt = detect(head)
    return fmt is not None and fmt.read is not None


def load(path: str | Path, *, binarized: bool | None = None, strict: bool = True, **options: Any) -> Model:
    """Read any model file binexport understands into the one in-memory :class:`Model`.

    The format is detected from the content, never the name.

    Args:
        path: a training checkpoint, bare state_dict, packed checkpoint or ``.bwn`` file, or a training run
            folder holding one (see :func:`resolve`).
        binarized: for torch checkpoints, override what ``log.txt`` beside the file says about ``--binarize``.
        strict: refuse (rather than read as full precision) a checkpoint whose binarisation nobody states.
        **options: passed to the format's reader (e.g. ``verify_checksums=False`` for ``.bwn``).

    Returns:
        The model: architecture, float tensors, sign bits, and where it came from (``model.source``).

    Raises:
        InputError: the file is missing, unreadable, of another architecture, or an ONNX file.
        FormatError: a ``.bwn`` file breaks the format's rules.

    Example:
        >>> model = binexport.load("checkpoint.pth.tar")          # doctest: +SKIP
        >>> model.arch.name, model.binarized                        # doctest: +SKIP
        ('WRN-20-10', True)
    """
    p, fmt = detect_file(resolve(path))
    if fmt.read is None:
        raise InputError(
            f"{p}: is an ONNX file; binexport exports ONNX but does not read it back into a model. "
            "Give the checkpoint it came from, or check the ONNX file with 'binexport verify'"
        )
    if fmt.name == "checkpoint":
        return fmt.read(p, binarized=binarized, strict=strict)
    return fmt.read(p, **options)


def default_output(src: str | Path, fmt: str) -> Path:
    """Beside the input: ``ckpt.pth.tar`` -> ``ckpt.packed.pth.tar`` / ``ckpt.bwn`` / ``ckpt.onnx``."""
    p = Path(src)
    name = p.name
    for suf in sorted({s for f in REGISTRY for s in f.suffixes}, key=len, reverse=True):
        if name.endswith(suf) and len(name) > len(suf):
            name = name[: -len(suf)]
            break
    return p.with_name(name + get(fmt).default_suffix)
