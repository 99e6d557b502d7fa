"""numpy's private pickle helpers under the name of the installed numpy (``numpy._core`` since 2.0)."""

from __future__ import annotations

try:
    from numpy._core import multiarray, numeric
except ImportError:  # numpy < 2
    from numpy.core import multiarray, numeric  # type: ignore[no-redef]

__all__ = ["multiarray", "numeric"]
