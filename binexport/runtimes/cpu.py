"""The CPU binexport runs on: its name and the flags that decide int8 and bfloat16 speed (the one cpuinfo reader).

``bench`` notes, ONNX Runtime's kernel summary (:mod:`.ort`) and the scripts in
``benchmarks/`` all read the machine here. Linux ``/proc/cpuinfo`` where it
exists; elsewhere the name comes from :mod:`platform` and the flags are unknown.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

#: CPU flags that decide int8 speed (ONNX Runtime's QLinearConv uses VNNI / AMX where present) and bf16 compute.
INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16", "avx512_bf16")
#: Flags that give int8 convolutions their dot-product instructions.
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class CpuInfo:
    """What a cpuinfo text says: the model name and every flag (``known``: the flags could be read)."""

    name: str
    flags: frozenset[str] = field(default_factory=frozenset)
    known: bool = True

    @property
    def int8_flags(self) -> list[str]:
        """Which of :data:`INT8_FLAGS` this CPU has, in that order."""
        return [f for f in INT8_FLAGS if f in self.flags]

    @property
    def has_amx(self) -> bool | None:
        """Whether the CPU has AMX int8; None where the flags could not be read."""
        return "amx_int8" in self.flags if self.known else None

    @property
    def has_int8_dot(self) -> bool:
        """Whether int8 convolutions get VNNI or AMX dot products here."""
        return bool(set(INT8_DOT_FLAGS) & self.flags)


def parse_cpuinfo(text: str, fallback_name: str = "") -> CpuInfo:
    """The first processor's model name and flags in a ``/proc/cpuinfo`` text.

    Example:
        >>> parse_cpuinfo("model name : AMD EPYC\\nflags : fpu avx2 avx512_vnni\\n").int8_flags
        ['avx2', 'avx512_vnni']
    """
    name, flags, known = fallback_name, frozenset[str](), False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            name = value.strip()
        elif key in ("flags", "Features"):  # x86, arm64
            flags, known = frozenset(value.split()), True
            break
    return CpuInfo(name, flags, known)


@lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's CPU (read once per process)."""
    fallback = platform.processor() or platform.machine()
    try:
        text = CPUINFO.read_text(errors="replace")
    except OSError:
        return CpuInfo(fallback, frozenset(), False)
    return parse_cpuinfo(text, fallback)


def has_amx() -> bool | None:
    """Whether this CPU has AMX int8; None where cpuinfo can't be read."""
    return cpu_info().has_amx
