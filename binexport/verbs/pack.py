"""``binexport pack``: one bit per binarised weight, in the published layout or ``.bwn``, proven bit for bit.

A full-precision model goes to ``.bwn`` as floats (float32 lossless, or conv weights in float16/bfloat16
with ``weights=``); the published layout can't hold float block convs, so it still needs ``binarize_anyway``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from binexport import formats
from binexport.errors import InputError
from binexport.fileio import check_output, write_atomic
from binexport.model import binarize
from binexport.precision import round_weights
from binexport.report import Report

#: Formats ``pack`` writes; the first is the default.


@dataclass
class PackReport(Report):
    """What ``pack`` did, in numbers; the CLI renders it, ``--json`` prints it."""

    input: str
    input_format: str
    input_layout: str
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
    weights: str = "1-bit"


def pack(
    src: str | Path,
    out: str | Path | None = None,
    *,
    format: str = "packed",
    binarized: bool | None = None,
    binarize_anyway: bool = False,
    force: bool = False,
    **write_options: object,
) -> PackReport:
    """Convert a checkpoint to one bit per binarised weight (or ``.bwn`` floats), write it atomically, prove it.

    The output is re-read from its temp file and compared bit for bit with the
    model (with ``weights=float16|bfloat16``: the model as rounded to that
    precision) before it replaces anything; on a mismatch no output is left.

    Args:
        src: any model file binexport reads (see :func:`binexport.load`).
        out: the output path (default: beside ``src``, e.g. ``ckpt.packed.pth.tar``).
        format: ``packed`` (the published layout), ``bwn`` or ``safetensors`` (docs/safetensors.md).
        binarized: override ``log.txt`` about ``--binarize`` for training checkpoints.
        binarize_anyway: binarise a full-precision model (its outputs change; the report says so). Needed for
            ``packed``; ``bwn`` stores a full-precision model as floats without it.
        force: replace an existing output.
        **write_options: the format writer's options (``.bwn``: ``encoding``, ``metadata``, ``weights`` =
            ``float32`` | ``float16`` | ``bfloat16`` for full-precision models; ``safetensors``: ``metadata``,
            ``weights``).

    Returns:
        A :class:`PackReport`: sizes, both ratios, what was checked.

    Raises:
        InputError: bad input or options, a full-precision model for ``packed`` without ``binarize_anyway``,
            half ``weights`` for a 1-bit model, an existing output.
        CheckError: the written file does not re-read bit for bit (nothing is left behind).

    Example:
        >>> r = binexport.pack("checkpoint.pth.tar", "model.bwn", format="bwn")   # doctest: +SKIP
        >>> round(r.weights_ratio)                                                # doctest: +SKIP
        43
        >>> binexport.pack("fp-checkpoint.pth.tar", "fp.bwn", format="bwn", weights="float16").weights  # doctest: +SKIP
        'float16'
    """
    t0 = time.perf_counter()
    if format not in formats.PACK_FORMATS:
        raise InputError(
            f"pack writes {' or '.join(repr(f) for f in formats.PACK_FORMATS)}, not {format!r}; for ONNX use 'binexport to-onnx'"
        )
    fmt = formats.get(format)
    write, read = fmt.write, fmt.read
    if write is None or read is None:  # every pack format has both; the registry says so
        raise InputError(f"the {format!r} format can't be written and re-read")
    src = formats.resolve(src)  # a training run folder: its one checkpoint (the output goes beside it)
    dest = check_output(out if out is not None else formats.default_output(src, fmt.name), force)
    model = formats.load(src, binarized=binarized)
    anyway = False
    if not model.binarized and (binarize_anyway or format not in formats.FLOAT_PACK_FORMATS):
        if not binarize_anyway:
            raise InputError(
                f"{src}: this is a full-precision model, and the published packed layout holds 1-bit block convs "
                "only; binarising it changes its outputs (the network was not trained with sign weights). Use "
                "--format bwn (float weights), pass --binarize-anyway to binarise it regardless, or export it with "
                "'binexport to-onnx --weights float32'"
            )
        model = binarize(model)
        anyway = True
    weights = write_options.get("weights")
    if weights is not None and format not in formats.FLOAT_PACK_FORMATS:
        raise InputError(f"--weights is a .bwn/safetensors option; the {format!r} format stores 1-bit block convs")
    data = write(model, **write_options)
    expect = round_weights(model, str(weights)) if weights is not None else model

    def _check(tmp: Path) -> None:
        back = read(tmp)
        expect.check_equal(back, f"the written {fmt.name} file")

    write_atomic(dest, data, check=_check)
    f32 = model.float32_weight_bytes()
    size_in = model.source.size
    return PackReport(
        input=str(src),
        input_format=model.source.format,
        input_layout=model.source.layout,
        output=str(dest),
        output_format=fmt.name,
        architecture=model.arch.name,
        num_classes=model.arch.num_classes,
        input_bytes=size_in,
        output_bytes=len(data),
        float32_bytes=f32,
        file_ratio=size_in / len(data),
        weights_ratio=f32 / len(data),
        zero_weights=model.zero_weights,
        binarized_anyway=anyway,
        tensors_checked=len(model.floats) + len(model.binary),
        seconds=time.perf_counter() - t0,
        options=dict(write_options),
        weights=expect.weights,
    )
