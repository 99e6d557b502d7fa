"""``binexport inspect``: what a file is, where its bytes go, and what it would become in each format."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from binexport import formats
from binexport.errors import InputError
from binexport.model import Model
from binexport.report import Report


@dataclass
class InspectReport(Report):
    """Everything ``inspect`` shows: what the file is, and what it would become."""

    path: str
    format: str
    layout: str
    sha256: str
    file_bytes: int
    architecture: dict[str, object]
    binarized: bool | None
    binarized_from: str
    binarized_params: int
    float_params: int
    zero_weights: int
    breakdown: dict[str, int]
    output_sizes: dict[str, object]
    details: dict[str, object] = field(default_factory=dict)
    weights: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        """The JSON object; ``binarised_params`` repeats ``binarized_params`` for 0.3.x only (old spelling)."""
        out = super().to_dict()
        out["binarised_params"] = self.binarized_params
        return out

    @property
    def binarised_params(self) -> int:
        """The old spelling of :attr:`binarized_params`, kept for 0.3.x."""
        return self.binarized_params


def inspect(path: str | Path, *, binarized: bool | None = None) -> InspectReport:
    """Describe a file and the size each output format would have, by writing each in memory.

    A full-precision model gets every size it can become: ``bwn`` (float32, lossless), ``bwn float16``,
    ``bwn bfloat16``, ``onnx`` (float32), ``onnx float16`` and ``onnx int8`` (written with placeholder
    activation ranges: ranges change values, not sizes, so this is the size a calibrated export has);
    ``packed`` says why the published layout can't hold it.

    Args:
        path: any model file binexport reads.
        binarized: override ``log.txt`` about ``--binarize``; without either, the mode is shown as unknown.

    Returns:
        An :class:`InspectReport`.

    Raises:
        InputError: the file is missing, unreadable or not a WRN of the training code.

    Example:
        >>> binexport.inspect("wrn20-10-1bit-packed.pth.tar").output_sizes["bwn"]   # doctest: +SKIP
        2491912
    """
    path = formats.resolve(path)  # a training run folder: its one checkpoint
    model = formats.load(path, binarized=binarized, strict=False)
    told = model.metadata.get("binarized_from", "")
    sizes = _sizes(model)
    details: dict[str, object] = {}
    describe = formats.get(model.source.format).describe if model.source.format in formats.NAMES else None
    if describe is not None:  # a format with a describe() adds its own details (.bwn)
        details = describe(path)
    nb, nf = model.param_counts()
    return InspectReport(
        path=str(path),
        format=model.source.format,
        layout=model.source.layout,
        sha256=model.source.sha256,
        file_bytes=model.source.size,
        architecture={
            **model.arch.to_dict(),
            "mode": "1-bit"
            if model.binarized
            else (
                "full precision"
                if told != "unknown"
                else f"unknown ({model.metadata.get('binarized_unknown', 'no log.txt')})"
            ),
        },
        binarized=None if told == "unknown" else model.binarized,
        binarized_from=told,
        binarized_params=nb,
        float_params=nf,
        zero_weights=model.zero_weights,
        breakdown=dict(model.source.breakdown),
        output_sizes=sizes,
        details=details,
        weights=model.weights,
    )


#: Extra outputs of a full-precision model: (size key, format, writer options).
_FULL_PRECISION_VARIANTS: tuple[tuple[str, str, dict[str, object]], ...] = (
    ("bwn", "bwn", {"weights": "float32"}),
    ("bwn float16", "bwn", {"weights": "float16"}),
    ("bwn bfloat16", "bwn", {"weights": "bfloat16"}),
    ("safetensors", "safetensors", {"weights": "float32"}),
    ("onnx", "onnx", {"weights": "float32"}),
    ("onnx float16", "onnx", {"weights": "float16"}),
    ("onnx int8", "onnx", {"weights": "int8"}),
)


def _sizes(model: Model) -> dict[str, object]:
    """Bytes of each writable format (every variant for a full-precision model), or why it can't be written."""
    sizes: dict[str, object] = {}
    if not model.binarized:
        sizes["packed"] = (
            "n/a: the published packed layout holds 1-bit block convs only and this model is full "
            "precision (binarising changes its outputs: pack --binarize-anyway)"
        )
        for key, name, options in _FULL_PRECISION_VARIANTS:
            if options["weights"] == "int8":  # placeholder ranges: calibration moves scales, not bytes
                from binexport.formats.onnx.int8 import required_ranges

                options = {**options, "int8_ranges": {k: (-1.0, 1.0) for k in required_ranges(model)}}
            sizes[key] = len(formats.get(name).write(model, **options))  # type: ignore[misc]  # both write
        return sizes
    for fmt in formats.REGISTRY:
        if fmt.write is None:  # read-only formats
            continue
        try:
            sizes[fmt.name] = len(fmt.write(model))
        except InputError as e:
            sizes[fmt.name] = f"n/a: {e}"
    return sizes
