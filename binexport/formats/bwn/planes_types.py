"""What the ``planes`` encoding (docs/FORMAT.md 13) shares between its parser and its decoder.

:mod:`.planes` parses a stream into a :class:`PlaneJob`; :mod:`.planes_decode` decodes the jobs in lockstep.
Both import these types from here, so neither imports the other's module back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Layout:
    """One dtype's bit fields: exponent bits, mantissa bits, and the unsigned type that holds a value's bits."""

    ebits: int
    mbits: int
    item: str

    @property
    def k(self) -> int:  # coded mantissa bits (B)
        return self.mbits % 8

    @property
    def r(self) -> int:  # stored mantissa bytes (LOW)
        return self.mbits // 8


LAYOUTS = {"f32": Layout(8, 23, "<u4"), "f16": Layout(5, 10, "<u2"), "bf16": Layout(8, 7, "<u2")}


@dataclass
class PlaneJob:
    """One tensor's planes stream, parsed and bounds-checked, waiting for :func:`decode_jobs`."""

    what: str
    n: int
    lay: Layout
    states: np.ndarray
    words: np.ndarray
    a_values: np.ndarray  # A of the present entries of the A table
    fa: np.ndarray
    ctx: np.ndarray
    b_tables: np.ndarray  # (n_ctx, 2^k) table bytes
    out: np.ndarray | None = None  # after decoding: the value's bits above LOW (uint16)

    @property
    def lanes(self) -> int:
        return self.states.size
