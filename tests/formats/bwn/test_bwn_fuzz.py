"""Fuzzing the .bwn reader: 10,000+ mutated files, each a clean read or binexport's FormatError, under a memory cap.

The loop runs in a subprocess with RLIMIT_AS set to what a small read needs
plus a margin, so a reader that believed a lying size would die of MemoryError
(and fail the test) instead of swapping. Mutations: truncations, bit flips,
random bytes, and targeted edits of the preamble, the JSON tensor table and the
coded payloads with every checksum recomputed, so the edits get past the CRCs
to the checks behind them. Longer runs: ``python tests/formats/bwn/test_bwn_fuzz.py 1000000``.

The 10,000-case run is marked slow (CI runs it, ``make test`` does not); a few hundred cases of the same loop
run by default.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest

# tests/ (which holds support/) on the path, wherever this file sits below it, also when run as a script
sys.path.insert(0, str(next(p for p in Path(__file__).resolve().parents if (p / "support" / "paths.py").is_file())))
from support.paths import ROOT  # noqa: E402

CASES = 10_000
FAST_CASES = 400
MEMORY_MARGIN = 384 << 20  # bytes of address space a small file may cost beyond the interpreter's own

ODD_VALUES = [
    0,
    1,
    -1,
    2**31 - 1,
    2**31,
    2**32,
    2**63,
    2**64,
    2**64 + 1,
    10**30,
    -(2**63),
    0.5,
    1e308,
    None,
    True,
    "x",
    [],
    {},
    [2**31 - 1] * 8,
    [0],
    [1, 1, 1, 1],
    [3, 3, 3, 3],
    "b1",
    "f32",
    "i64",
    "raw",
    "packed",
    "rans",
    "rans-ref",
    "f32-rans",
    "\udcff",
    "\u00e9" * 300,
]


def _base_files() -> list[bytes]:
    from support.models import tiny_model

    from binexport.formats import bwn

    small = tiny_model(8, 0.0625, num_classes=3, seed=5)
    return [bwn.write(small, encoding=e) for e in ("best", "rans", "rans-ref")] + [
        bwn.write(tiny_model(8, 0.0625, num_classes=3, seed=6, binarized=False))
    ]


def _split(data: bytes) -> tuple[dict, list[bytes]]:
    hlen = struct.unpack_from("<Q", data, 16)[0]
    doc = json.loads(data[32 : 32 + hlen])
    return doc, [data[e["offset"] : e["offset"] + e["length"]] for e in doc["tensors"]]


def _assemble(header: bytes, payloads: list[bytes]) -> bytes:
    pre = struct.pack("<8sIIQI", b"\x89BWN\r\n\x1a\n", 1, 0, len(header), 64)
    out = bytearray(pre + struct.pack("<I", zlib.crc32(header, zlib.crc32(pre))) + header)
    for p in payloads:
        out += bytes(-len(out) % 64) + p
    return bytes(out)


def _relay(doc: dict, payloads: list[bytes], edit=None) -> bytes:
    """A file with valid checksums whose header is ``doc`` after ``edit`` (applied once offsets are known)."""
    from support.bwn_spec_reader import lay_out

    return lay_out(doc, payloads, edit)


def mutate(base: bytes, rng: np.random.Generator) -> bytes:
    kind = int(rng.integers(10))
    data = bytearray(base)
    n = len(data)
    if kind == 0:  # truncation
        return bytes(data[: int(rng.integers(0, n))])
    if kind == 1:  # a few bit flips anywhere
        for _ in range(int(rng.integers(1, 5))):
            i = int(rng.integers(0, n))
            data[i] ^= 1 << int(rng.integers(8))
        return bytes(data)
    if kind == 2:  # random bytes over a short run, maybe in the preamble
        i = int(rng.integers(0, 40 if rng.random() < 0.3 else n))
        data[i : i + int(rng.integers(1, 9))] = rng.bytes(int(rng.integers(1, 9)))
        return bytes(data)
    doc, payloads = _split(base)
    if kind in (3, 4):  # one field of one tensor entry, or of the metadata, set to an odd value

        def edit(d: dict) -> None:
            if rng.random() < 0.8:
                e = d["tensors"][int(rng.integers(len(d["tensors"])))]
                key = ["name", "dtype", "shape", "encoding", "offset", "length", "crc32", "extra"][int(rng.integers(8))]
                if rng.random() < 0.15:
                    e.pop(key, None)
                elif key == "offset" and rng.random() < 0.5:  # overlap or reorder with another tensor
                    e[key] = d["tensors"][int(rng.integers(len(d["tensors"])))]["offset"] + int(rng.integers(-64, 65))
                else:
                    e[key] = ODD_VALUES[int(rng.integers(len(ODD_VALUES)))]
            else:
                m = d["metadata"]
                key = ["architecture", "binarized", "zero_weights", "user", "source"][int(rng.integers(5))]
                m[key] = ODD_VALUES[int(rng.integers(len(ODD_VALUES)))]

        return _relay(doc, payloads, edit)
    if kind == 5:  # tensors dropped, duplicated or swapped
        k = int(rng.integers(len(payloads)))
        j = int(rng.integers(len(payloads)))
        entries = doc["tensors"]
        if rng.random() < 0.4:
            del entries[k], payloads[k]
        elif rng.random() < 0.5:
            entries.insert(j, dict(entries[k]))
            payloads.insert(j, payloads[k])
        else:
            entries[k], entries[j] = entries[j], entries[k]
        return _relay(doc, payloads)
    if kind in (6, 7, 8):  # a coded or packed payload changed, its checksum and length made to match
        coded = [k for k, e in enumerate(doc["tensors"]) if e["encoding"] != "raw"] or [0]
        k = coded[int(rng.integers(len(coded)))]
        p = bytearray(payloads[k])
        if kind == 6 and p:  # the fixed head: axis, wq, reserved, lanes, first/span
            i = int(rng.integers(0, min(8, len(p))))
            p[i] = int(rng.integers(256)) if rng.random() < 0.7 else p[i] ^ 1
        elif kind == 7 and p:
            for _ in range(int(rng.integers(1, 4))):
                p[int(rng.integers(len(p)))] ^= 1 << int(rng.integers(8))
        else:
            cut = int(rng.integers(0, len(p) + 1))
            p = p[:cut] + bytearray(rng.bytes(int(rng.integers(0, 3)) * 2))
        payloads[k] = bytes(p)
        return _relay(doc, payloads)
    # kind 9: raw header text mutated (bad UTF-8, bad JSON), or a preamble field, checksum recomputed
    hlen = struct.unpack_from("<Q", base, 16)[0]
    header = bytearray(base[32 : 32 + hlen])
    if rng.random() < 0.5:
        i = int(rng.integers(len(header)))
        header[i : i + 1] = [b"\xff", b"\xc3", b"{", b"]", b'"', b"9" * 30, b"\\u", b"-"][int(rng.integers(8))]
        return _assemble(bytes(header), payloads)
    data = bytearray(base)
    field = int(rng.integers(4))
    if field == 0:
        data[8:12] = struct.pack("<I", int(rng.choice([0, 2, 3, 2**32 - 1])))
    elif field == 1:
        data[12:16] = struct.pack("<I", 1 << int(rng.integers(32)))
    elif field == 2:
        data[16:24] = struct.pack("<Q", int(rng.integers(0, 2**63)) >> int(rng.integers(0, 63)))
    else:
        data[24:28] = struct.pack("<I", int(rng.integers(0, 2**32)) >> int(rng.integers(0, 32)))
    h = struct.unpack_from("<Q", data, 16)[0]
    if 32 + h <= len(data):
        data[28:32] = struct.pack("<I", zlib.crc32(bytes(data[32 : 32 + h]), zlib.crc32(bytes(data[:28]))))
    return bytes(data)


def run(cases: int, seed: int) -> dict[str, int]:
    """Read ``cases`` mutated files; return outcome counts; raise on anything but success or FormatError."""
    from binexport.errors import FormatError
    from binexport.formats import bwn

    bases = _base_files()
    rng = np.random.default_rng(seed)
    counts = {"ok": 0, "FormatError": 0}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case.bwn"
        for case in range(cases):
            data = mutate(bases[case % len(bases)], rng)
            path.unlink(missing_ok=True)  # a fresh inode: truncating the old one in place costs milliseconds
            path.write_bytes(data)
            try:
                bwn.read(path, verify_checksums=bool(case % 3))
                counts["ok"] += 1
            except FormatError:
                counts["FormatError"] += 1
            except BaseException as e:  # anything else is a reader bug: report the case to reproduce it
                raise AssertionError(f"case {case} (seed {seed}): {type(e).__name__}: {e}") from e
    return counts


def _limit_memory() -> None:
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + MEMORY_MARGIN, vm + MEMORY_MARGIN))


def _fuzz(cases_per_seed: int, seeds: tuple[int, ...]) -> dict[str, int]:
    """Run the loop in one capped child per seed (one per core) and add up their outcome counts."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, str(cases_per_seed), str(seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for seed in seeds
    ]
    totals = {"ok": 0, "FormatError": 0}
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, out[-2000:] + err[-4000:]
        for k, v in json.loads(out.strip().splitlines()[-1]).items():
            totals[k] += v
    return totals


@pytest.mark.slow
def test_reader_fuzz_every_case_ends_in_format_error_or_success() -> None:
    half = CASES // 2
    totals = _fuzz(half, (20261125, 4))
    assert sum(totals.values()) == 2 * half >= 10_000
    assert totals["FormatError"] > half and totals["ok"] > 0, totals


def test_reader_fuzz_a_few_hundred_cases() -> None:
    """The same loop, cap and verdict at a size the default run affords (every mutation kind comes up)."""
    totals = _fuzz(FAST_CASES, (11,))
    assert sum(totals.values()) == FAST_CASES
    assert totals["FormatError"] > FAST_CASES // 2, totals


def test_the_memory_cap_is_real() -> None:
    """The cap the fuzz loop runs under does stop an allocation that a lying size would cause."""
    code = (
        "import sys; sys.argv = ['x']; import test_bwn_fuzz as f; import numpy as np; f._limit_memory()\n"
        "try:\n    np.ones(1 << 30, np.uint8)\nexcept MemoryError:\n    print('capped')"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parent,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},  # the import below finds this file by its folder
    )
    assert "capped" in r.stdout, r.stderr


if __name__ == "__main__":
    import binexport.formats.bwn  # noqa: F401  (imports first, so the limit measures the loaded interpreter)

    _limit_memory()
    print(
        json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else CASES, int(sys.argv[2]) if len(sys.argv) > 2 else 0))
    )
