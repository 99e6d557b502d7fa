"""The library functions the CLI is a thin layer over: load, inspect, pack."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from binexport import formats
from binexport._fileio import check_input, check_output, read_head, write_atomic
from binexport.errors import InputError
from binexport.model import Model, binarize

_KNOWN_SUFFIXES = (".pth.tar", ".pth", ".pt", ".th", ".tar", ".bwn", ".onnx")
_PACK_FORMATS = ("packed", "bwn")
_DEFAULT_SUFFIX = {"packed": ".packed.pth.tar", "bwn": ".bwn", "onnx": ".onnx"}


def load(path: str | Path, *, binarized: bool | None = None, strict: bool = True, **options: object) -> Model:
    """Read any file binexport understands, detected from its content, never its name.

    ``binarized`` overrides log.txt for training checkpoints and bare state_dicts.
    """
    p = check_input(path)
    head = read_head(p, 64)
    if not head:
        raise InputError(f"{p}: the file is empty (0 bytes); expected a checkpoint")
    fmt = formats.detect(head)
    if fmt is None:
        raise InputError(f"{p}: unrecognised file (starts with {head[:8]!r}); expected a PyTorch checkpoint, "
                         f"a packed checkpoint or a .bwn file")
    if fmt.NAME == "checkpoint":
        return fmt.read(p, binarized=binarized, strict=strict)
    return fmt.read(p, **options)


def default_output(src: str | Path, fmt: str) -> Path:
    """Beside the input: ``ckpt.pth.tar`` -> ``ckpt.packed.pth.tar`` / ``ckpt.bwn`` / ``ckpt.onnx``."""
    p = Path(src)
    name = p.name
    for suf in _KNOWN_SUFFIXES:
        if name.endswith(suf) and len(name) > len(suf):
            name = name[: -len(suf)]
            break
    return p.with_name(name + _DEFAULT_SUFFIX.get(fmt, "." + fmt))


@dataclass
class PackReport:
    """What ``pack`` did, in numbers; the CLI renders it, ``--json`` prints it."""

    input: str
    input_format: str
    output: str
    output_format: str
    architecture: str
    num_classes: int
    input_bytes: int
    output_bytes: int
    float32_bytes: int
    file_ratio: float
    weights_ratio: float
    zero_weights: int
    binarized_anyway: bool
    tensors_checked: int
    seconds: float
    options: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def pack(src: str | Path, out: str | Path | None = None, *, format: str = "packed", binarized: bool | None = None,
         binarize_anyway: bool = False, force: bool = False, **write_options: object) -> PackReport:
    """Convert a checkpoint to one bit per binarised weight, write it atomically, and prove it.

    The output is re-read from its temp file and compared bit for bit with the
    model before it replaces anything; on a mismatch no output is left.
    """
    t0 = time.perf_counter()
    if format not in _PACK_FORMATS:
        raise InputError(f"pack writes {' or '.join(repr(f) for f in _PACK_FORMATS)}, not {format!r}; "
                         "for ONNX use 'binexport to-onnx'")
    fmt = formats.get(format)
    dest = check_output(out if out is not None else default_output(src, fmt.NAME), force)
    model = load(src, binarized=binarized)
    anyway = False
    if not model.binarized:
        if not binarize_anyway:
            raise InputError(
                f"{src}: this is a full-precision model; binarising it changes its outputs (the network was not "
                "trained with sign weights). Pass --binarize-anyway to do it regardless, or export it with "
                "'binexport to-onnx --weights float32'")
        model = binarize(model)
        anyway = True
    data = fmt.write(model, **write_options)

    def _check(tmp: Path) -> None:
        back = fmt.read(tmp)
        model.check_equal(back, f"the written {fmt.NAME} file")

    write_atomic(dest, data, check=_check)
    f32 = model.float32_weight_bytes()
    size_in = model.source.size
    return PackReport(
        input=str(src), input_format=model.source.format, output=str(dest), output_format=fmt.NAME,
        architecture=model.arch.name, num_classes=model.arch.num_classes, input_bytes=size_in,
        output_bytes=len(data), float32_bytes=f32, file_ratio=size_in / len(data), weights_ratio=f32 / len(data),
        zero_weights=model.zero_weights, binarized_anyway=anyway,
        tensors_checked=len(model.floats) + len(model.binary), seconds=time.perf_counter() - t0,
        options=dict(write_options))


@dataclass
class InspectReport:
    """Everything ``inspect`` shows: what the file is, and what it would become."""

    path: str
    format: str
    sha256: str
    file_bytes: int
    architecture: dict[str, object]
    binarized: bool | None
    binarized_from: str
    binarised_params: int
    float_params: int
    zero_weights: int
    breakdown: dict[str, int]
    output_sizes: dict[str, object]
    details: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def inspect(path: str | Path, *, binarized: bool | None = None) -> InspectReport:
    """Describe a file and the size each output format would have, by writing each in memory."""
    model = load(path, binarized=binarized, strict=False)
    told = model.metadata.get("binarized_from", "")
    sizes: dict[str, object] = {}
    for name in formats.names():
        if name == "checkpoint":  # read-only
            continue
        try:
            sizes[name] = len(formats.get(name).write(model))
        except InputError as e:
            sizes[name] = f"n/a: {e}"
    details: dict[str, object] = {}
    if model.source.format in formats.names():  # a format with a describe() adds its own details (.bwn)
        describe = getattr(formats.get(model.source.format), "describe", None)
        if describe is not None:
            details = describe(path)
    nb, nf = model.param_counts()
    return InspectReport(
        path=str(path), format=model.source.format, sha256=model.source.sha256, file_bytes=model.source.size,
        architecture={**model.arch.to_dict(), "mode": "1-bit" if model.binarized else
                      ("full precision" if told != "unknown" else "unknown (no log.txt)")},
        binarized=None if told == "unknown" else model.binarized, binarized_from=told,
        binarised_params=nb, float_params=nf, zero_weights=model.zero_weights,
        breakdown=dict(model.source.breakdown), output_sizes=sizes, details=details)
