"""An int8 export's activation ranges: the PyTorch reference over training images, a few held out to validate on.

``to-onnx --weights int8 --calibrate`` calls :func:`calibrate_ranges`; the defaults below are its options'
(``cli/options.py`` takes them from here).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from binexport.errors import InputError
from binexport.model import Model

#: int8 calibration defaults: accuracy was flat from 32 to 512 images on the real WRN-20-10 (docs/BENCHMARKS.md);
#: 256 keeps the worst logit error low, and the 99.999th percentile beat min/max, 99.9, 99.99 and ORT's entropy.
CALIBRATION_SIZE = 256
MAX_CALIBRATION_SIZE = 50_000
PERCENTILE = 99.999
#: Training images after the calibration sample, held out to validate an int8 export on: real images, so an
#: agreement percentage means something where there are at least ``check.MIN_AGREEMENT_IMAGES`` of them.
HELDOUT_IMAGES = 96


@dataclass
class Calibration:
    """Where an int8 export's activation ranges came from."""

    source: str
    images: int
    percentile: float
    heldout_images: int
    seconds: float


def calibrate_ranges(
    model: Model,
    source: str | Path,
    data_root: str | Path | None,
    size: int,
    percentile: float,
    images: str | Path | None,
) -> tuple[Calibration, np.ndarray | None, dict[str, Any]]:
    """Activation ranges from ``size`` training images; the next few are held out to validate the export on.

    Returns:
        The :class:`Calibration` record, the held-out images (None: none left) and the int8 writer's options.

    Raises:
        InputError: a size or percentile out of range, or no usable training images at ``source``.
    """
    from binexport.data import normalize
    from binexport.data.calibration import load_calibration
    from binexport.runtimes import select_input
    from binexport.runtimes.torch_ref import TorchRuntime

    if not 1 <= size <= MAX_CALIBRATION_SIZE:
        raise InputError(f"--calibration-size must be 1..{MAX_CALIBRATION_SIZE}, got {size}")
    if not (np.isfinite(percentile) and 50 < percentile <= 100):
        raise InputError(f"--percentile must lie in (50, 100], got {percentile}")
    t = time.perf_counter()
    ds = load_calibration(source, data_root, limit=size + HELDOUT_IMAGES, not_from=images)
    use, heldout = split_calibration(ds.images, size)
    ref = TorchRuntime(model)
    ranges = ref.activation_ranges(select_input(ref.input_kind, use, normalize(use)), percentile)
    cal = Calibration(
        source=ds.origin,
        images=len(use),
        percentile=percentile,
        heldout_images=0 if heldout is None else len(heldout),
        seconds=time.perf_counter() - t,
    )
    info = {"calibration": {"source": Path(ds.origin).name, "images": cal.images, "percentile": percentile}}
    return cal, heldout, {"int8_ranges": ranges, "int8_info": info}


def split_calibration(images: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The first ``size`` images calibrate; up to :data:`HELDOUT_IMAGES` after them validate (None: none left)."""
    held = images[size : size + HELDOUT_IMAGES]
    return images[:size], held if len(held) else None
