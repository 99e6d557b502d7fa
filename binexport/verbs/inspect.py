"""``binexport inspect``: what a file is, where its bytes go, and what it would become in each format."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from binexport import formats
from binexport.errors import InputError

SCHEMA_VERSION = 1


@dataclass
class InspectReport:
    """Everything ``inspect`` shows: what the file is, and what it would become."""

    path: str
    format: str
    layout: str
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
    weights: str = "float32"
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def inspect(path: str | Path, *, binarized: bool | None = None) -> InspectReport:
    """Describe a file and the size each output format would have, by writing each in memory.

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
    model = formats.load(path, binarized=binarized, strict=False)
    told = model.metadata.get("binarized_from", "")
    sizes: dict[str, object] = {}
    for fmt in formats.REGISTRY:
        if fmt.write is None:  # read-only formats
            continue
        try:
            sizes[fmt.name] = len(fmt.write(model))
        except InputError as e:
            sizes[fmt.name] = f"n/a: {e}"
    details: dict[str, object] = {}
    describe = formats.get(model.source.format).describe if model.source.format in formats.NAMES else None
    if describe is not None:  # a format with a describe() adds its own details (.bwn)
        details = describe(path)
    nb, nf = model.param_counts()
    return InspectReport(
        path=str(path), format=model.source.format, layout=model.source.layout, sha256=model.source.sha256, file_bytes=model.source.size,
        architecture={**model.arch.to_dict(), "mode": "1-bit" if model.binarized else
                      ("full precision" if told != "unknown" else "unknown (no log.txt)")},
        binarized=None if told == "unknown" else model.binarized, binarized_from=told,
        binarised_params=nb, float_params=nf, zero_weights=model.zero_weights,
        breakdown=dict(model.source.breakdown), output_sizes=sizes, details=details, weights=model.weights)
