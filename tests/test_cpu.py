"""The one cpuinfo reader: name and flags from a fixture text, AMX, and what bench and the kernel notes use."""

from __future__ import annotations

from pathlib import Path

import pytest

from binexport.runtimes import cpu
from binexport.runtimes.cpu import INT8_FLAGS, CpuInfo, parse_cpuinfo

# two processors of a Sapphire Rapids machine, abridged: the first processor's lines are the answer
SPR = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""
# the machine the tests run on (AMD EPYC, AVX-512 VNNI, no AMX)
EPYC = "processor : 0\nmodel name : AMD EPYC\nflags : fpu avx avx2 avx512f avx512_vnni avx_vnni avx512_bf16\n"
# an old CPU: AVX2 only
HASWELL = "model name : Intel(R) Core(TM) i7-4770\nflags : fpu avx avx2 fma\n"
# arm64 says Features, and has no model name
ARM = "processor : 0\nBogoMIPS : 50.00\nFeatures : fp asimd asimddp\n"


def test_name_and_flags_of_the_first_processor() -> None:
    info = parse_cpuinfo(SPR)
    assert info.name == "Intel(R) Xeon(R) Platinum 8480+"
    assert info.int8_flags == ["avx2", "avx512f", "avx512_vnni", "amx_int8", "amx_bf16", "avx512_bf16"]
    assert info.has_amx is True and info.has_int8_dot


def test_epyc_has_vnni_but_no_amx() -> None:
    info = parse_cpuinfo(EPYC)
    assert info.name == "AMD EPYC" and info.has_amx is False and info.has_int8_dot
    assert info.int8_flags == [
        f for f in INT8_FLAGS if f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16")
    ]


def test_avx2_only_has_no_int8_dot_products() -> None:
    info = parse_cpuinfo(HASWELL)
    assert info.int8_flags == ["avx2"] and not info.has_int8_dot and info.has_amx is False


def test_unknown_flags_say_none_not_false() -> None:
    assert parse_cpuinfo("", "x86_64") == CpuInfo("x86_64", frozenset(), False)
    assert parse_cpuinfo("", "x86_64").has_amx is None  # unreadable: the kernel summary says "where the CPU has it"
    arm = parse_cpuinfo(ARM, "aarch64")
    assert arm.name == "aarch64" and arm.known and arm.has_amx is False and arm.int8_flags == []


def test_this_machine_is_read_once_and_unreadable_cpuinfo_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cpu.cpu_info() is cpu.cpu_info()  # cached: bench notes and every kernel summary read it once
    monkeypatch.setattr(cpu, "CPUINFO", tmp_path / "absent")
    cpu.cpu_info.cache_clear()
    try:
        info = cpu.cpu_info()
        assert not info.known and info.int8_flags == [] and cpu.has_amx() is None and info.name
    finally:
        cpu.cpu_info.cache_clear()
