"""Crafted `.mat` files: each ends in one stderr line and exit 2, never a crash.

The files are built element by element with tests/matwriter.py. Each runs ``binexport inspect`` and
``binexport pack --format bwn`` in a subprocess under an address-space cap, so a regression that segfaults
or inflates a bomb fails its test instead of taking pytest down.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from support.cli import Ran, run_cli
from support.matwriter import (
    MI,
    MX,
    build,
    cell,
    compressed,
    element,
    keras_vars,
    matlab_vars,
    matrix,
    matrix_prefix,
    numeric,
    zeros_stream,
)
from support.mcdonnell_oracle import tiny_net
from support.paths import ROOT, pythonpath
from support.refusals import assert_refused

import binexport
from binexport.errors import InputError
from binexport.formats import mat

CAP = 1 << 30  # address space of each child: a 1.5 GiB inflate or allocation fails instead of succeeding


def _cap() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))


# every crafted case through `inspect` and `pack --format bwn` in one child under the cap (one interpreter start
# instead of two a case): each verb in-process there, as a user would run it
CHILD = r"""
import json, resource, sys
cap = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
from support.cli import invoke
out = {}
for case, path, dest in json.loads(sys.argv[2]):
    rows = []
    for args in (["inspect", path], ["pack", path, "--format", "bwn", "-o", dest]):
        r = invoke(*args)
        escaped = r.exception is not None and not isinstance(r.exception, SystemExit)
        rows.append([r.exit_code, r.stdout, r.stderr, repr(r.exception) if escaped else ""])
    out[case] = rows
print("RESULT " + json.dumps(out))
"""


NET = tiny_net()


def _matlab(**override: bytes) -> bytes:
    return build({**matlab_vars(NET), **override})


def _deep_cell(levels: int, name: str = "BinaryWeights") -> bytes:
    inner = numeric("", NET["bits"][0])
    for _ in range(levels):
        inner = cell("", [inner])
    return cell(name, [inner])


def _struct_zero_field_names(name: str) -> bytes:
    body = element(MI["int32"], struct.pack("<i", 0)) + element(MI["int8"], b"")  # field-name length 0, no names
    return matrix(name, MX["struct"], (1, 1), body)


def _bomb_declared() -> bytes:
    """A tiny LayerWeights header whose miMATRIX declares 1.5 GiB, over 64 MiB of real zeros."""
    prefix = matrix_prefix("LayerWeights", MX["single"], (20, 1), 3 << 29) + struct.pack("<II", MI["single"], 3 << 29)
    z = zeros_stream(prefix, 64 << 20)
    return struct.pack("<II", MI["compressed"], len(z)) + z


def _bomb_trailing() -> bytes:
    """An honest small LayerWeights whose zlib stream goes on for 64 MiB past the matrix it declares."""
    z = zeros_stream(numeric("LayerWeights", np.ones((20, 1), np.float32)), 64 << 20)
    return struct.pack("<II", MI["compressed"], len(z)) + z


def _trailing_after_stream() -> bytes:
    """An honest LayerWeights whose compressed element goes on for 16 bytes after its zlib stream ends."""
    z = compressed(numeric("LayerWeights", np.ones((20, 1), np.float32)))
    return struct.pack("<II", MI["compressed"], len(z) - 8 + 16) + z[8:] + bytes(16)


def _big_cell() -> bytes:
    """BinaryWeights{1} an honest (3, 3, 3, 2e6) logical array of zeros: 54 MB declared in a few KB."""
    n = 3 * 3 * 3 * 2_000_000
    child = matrix_prefix("", MX["uint8"], (3, 3, 3, 2_000_000), 8 + n, flags=0x200) + struct.pack("<II", 2, n)
    head = matrix_prefix("BinaryWeights", MX["cell"], (1, 1), len(child) + n)
    z = zeros_stream(head + child, n)
    return struct.pack("<II", MI["compressed"], len(z)) + z


def _moments(scale: float, col: int) -> bytes:
    arrs = [np.stack([m, np.sqrt(v + 1e-5)], 1).astype(np.float64) for _, _, m, v in NET["bns"]]
    arrs[2][:, col] = scale
    return cell("Moments", [numeric("", a) for a in arrs], (len(arrs), 1))


def _keras_bn_huge() -> bytes:
    d = keras_vars(NET)
    _, _, m, v = NET["bns"][3]
    rows = np.stack([m, v]).astype(np.float64)
    rows[1] = 1e300  # finite as a double, infinite as a single
    d["batch_normalization_v1_4"] = numeric("batch_normalization_v1_4", rows)
    return build(d)


CASES: dict[str, tuple[Callable[[], bytes], str]] = {
    # 1. deep nesting (a cell inside a cell, 5,000 levels) and function-class matrices
    "deep-cell": (lambda: _matlab(BinaryWeights=_deep_cell(5000)), "cells of numeric arrays only"),
    "function-class": (
        lambda: _matlab(BinaryWeights=matrix("BinaryWeights", MX["function"], (1, 1), _deep_cell(50))),
        "function handle array",
    ),
    "function-in-cell": (
        lambda: _matlab(BNG=cell("BNG", [matrix("", MX["function"], (1, 1))])),
        "cells of numeric arrays only",
    ),
    # 2. unknown data-element type codes
    "top-mdtype-65000": (lambda: _matlab() + element(65000, bytes(16)), "type 65000"),
    "top-mdtype-14-compressed-14": (lambda: _matlab() + struct.pack("<II", 15, 16) + bytes(16), "damaged"),
    "data-mdtype-14": (
        lambda: _matlab(LayerWeights=numeric("LayerWeights", np.ones((20, 1), np.float32), data_type=14)),
        "data of type 14",
    ),
    "data-mdtype-65000-in-cell": (
        lambda: _matlab(BNB=cell("BNB", [numeric("", np.ones((4, 1), np.float32), data_type=65000)])),
        "type 65000",
    ),
    "char-says-double": (lambda: _matlab(Stride=numeric("Stride", np.ones((1, 8)), cls="char")), "char array"),
    "flags-type-wrong": (
        lambda: _matlab(Padding=b"\x0e\x00\x00\x00\x10\x00\x00\x00" + element(9, bytes(8))),
        "array flags",
    ),
    # 3. a struct with zero-length field names, where a numeric array belongs
    "struct-zero-fieldnames": (lambda: _matlab(BNG=_struct_zero_field_names("BNG")), "struct array"),
    # 4. geometry fields of the wrong class
    "stride-char": (
        lambda: _matlab(Stride=numeric("Stride", np.ones((1, 8)), cls="char", data_type=4, data_declared=None)),
        "char array",
    ),
    "stride-cell": (lambda: _matlab(Stride=cell("Stride", [numeric("", np.ones((1, 8)))])), "Stride is a cell"),
    "stride-sparse": (lambda: _matlab(Stride=matrix("Stride", MX["sparse"], (1, 8))), "sparse array"),
    "numchannels-struct": (lambda: _matlab(NumChannels=_struct_zero_field_names("NumChannels")), "struct array"),
    "stride-nan": (lambda: _matlab(Stride=numeric("Stride", np.full((1, 8), np.nan))), "whole numbers"),
    "numchannels-1e300": (lambda: _matlab(NumChannels=numeric("NumChannels", np.full((1, 9), 1e300))), "whole numbers"),
    # 5. zlib bombs under the file cap
    "bomb-declared-1.5GiB": (lambda: _matlab(LayerWeights=b"") + _bomb_declared(), "honestly hold"),
    "bomb-trailing-stream": (
        lambda: build({k: v for k, v in matlab_vars(NET).items() if k != "LayerWeights"}) + _bomb_trailing(),
        "holds more or less",
    ),
    "bytes-after-zlib-stream": (lambda: _matlab(LayerWeights=b"") + _trailing_after_stream(), "holds more or less"),
    "data-declares-1.5GiB": (
        lambda: _matlab(LayerWeights=numeric("LayerWeights", np.ones((20, 1), np.float32), data_declared=3 << 29)),
        "data element declares",
    ),
    # 6. a big array inside a cell
    "big-cell": (
        lambda: build({k: v for k, v in matlab_vars(NET).items() if k != "BinaryWeights"}) + _big_cell(),
        "honestly hold",
    ),
    # 7. values that are finite in double and infinite in single
    "moments-mean-1e300": (lambda: _matlab(Moments=_moments(1e300, 0)), "infinite"),
    "moments-sigma-1e20": (lambda: _matlab(Moments=_moments(1e20, 1)), "overflows single"),
    "keras-var-1e300": (_keras_bn_huge, "infinite"),
    # 8. negative dimensions
    "negative-dim": (
        lambda: _matlab(LayerWeights=numeric("LayerWeights", np.ones((20, 1), np.float32), dims=(-20, -1))),
        "can't be negative",
    ),
    "negative-dim-in-cell": (
        lambda: _matlab(BNG=cell("BNG", [numeric("", np.ones((4, 1), np.float32), dims=(4, -1))])),
        "can't be negative",
    ),
    # truncated elements and lying sizes
    "element-past-eof": (lambda: _matlab() + struct.pack("<II", 14, 1 << 20) + bytes(64), "truncated"),
    "cell-child-lies": (
        lambda: _matlab(
            BNB=cell(
                "BNB",
                [
                    numeric("", np.ones((4, 1), np.float32))[:4]
                    + struct.pack("<I", 4096)
                    + numeric("", np.ones((4, 1), np.float32))[8:]
                ],
            )
        ),
        "BNB",
    ),
    "cell-count-lies": (
        lambda: _matlab(BNG=cell("BNG", [numeric("", np.ones((4, 1), np.float32))], (1, 10**9))),
        "cells",
    ),
    "matrix-declares-more": (
        lambda: _matlab(
            Padding=matrix("Padding", MX["double"], (1, 8), element(9, np.ones(8).tobytes()), declared=4096)
        ),
        "Padding",
    ),
    "bad-endian": (lambda: _matlab()[:126] + b"XX" + _matlab()[128:], "endian"),
    "big-endian": (lambda: _matlab()[:126] + b"MI" + _matlab()[128:], "little-endian"),
    "logical-double": (
        lambda: _matlab(
            BinaryWeights=cell(
                "BinaryWeights",
                [
                    numeric("", NET["bits"][0].astype(np.float64))[:16]
                    + struct.pack("<II", MX["double"] | 0x200, 0)
                    + numeric("", NET["bits"][0].astype(np.float64))[24:]
                ],
            )
        ),
        "logical double",
    ),
    "bad-version": (lambda: _matlab()[:124] + b"\x00\x07" + _matlab()[126:], "version"),
}


@pytest.fixture(scope="module")
def crafted_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[list[object]]]]:
    d = tmp_path_factory.mktemp("crafted")
    jobs = []
    for case, (make, _) in CASES.items():
        (d / f"{case}.mat").write_bytes(make())
        jobs.append([case, str(d / f"{case}.mat"), str(d / f"{case}.bwn")])
    r = subprocess.run(
        [sys.executable, "-c", CHILD, str(CAP), json.dumps(jobs)],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": pythonpath()},
        timeout=600,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    line = next(x for x in r.stdout.splitlines() if x.startswith("RESULT "))
    return d, json.loads(line[len("RESULT ") :])


@pytest.mark.parametrize("case", list(CASES))
def test_crafted_file_is_refused_in_one_line(
    case: str, crafted_results: tuple[Path, dict[str, list[list[object]]]]
) -> None:
    d, results = crafted_results
    for verb, (code, stdout, stderr, escaped) in zip(("inspect", "pack"), results[case], strict=True):
        assert not escaped, (verb, escaped)
        assert_refused(Ran(int(code), str(stdout), str(stderr)), match=CASES[case][1])
    assert not (d / f"{case}.bwn").exists()


def test_writer_builds_readable_layouts(tmp_path: Path) -> None:
    """The crafting helper's honest files read as the tiny net (so each case above breaks one thing only)."""
    import scipy.io

    for name, raw in (("m", build(matlab_vars(NET))), ("k", build(keras_vars(NET), compress=False))):
        p = tmp_path / f"{name}.mat"
        p.write_bytes(raw)
        m = binexport.load(p)
        assert m.arch.name == "WRN-8-0.25"
        assert np.array_equal(m.binary["conv0"].signs, NET["bits"][0].transpose(3, 2, 0, 1))
        assert set(scipy.io.whosmat(p)[0][:1]) <= {v for v, *_ in scipy.io.whosmat(p)}  # scipy agrees it is a MAT file


def test_unread_variables_are_never_parsed(tmp_path: Path) -> None:
    """McDonnell's files carry structs and char cells binexport does not need: those are listed, not decoded."""
    p = tmp_path / "extra.mat"
    p.write_bytes(_matlab(Training=_struct_zero_field_names("Training"), LayerTypes=_deep_cell(3000, "LayerTypes")))
    assert binexport.load(p).arch.name == "WRN-8-0.25"


def test_decode_budget_is_charged_before_inflating(tmp_path: Path) -> None:
    assert mat.decode_limit(1000) == mat.DECODE_FLOOR and mat.decode_limit(4 << 20) == 64 << 20
    p = tmp_path / "bomb.mat"
    p.write_bytes(_matlab(LayerWeights=b"") + _bomb_declared())
    with pytest.raises(InputError, match="honestly hold"):
        binexport.load(p)


def test_random_byte_flips_never_crash(tmp_path: Path) -> None:
    """Seeded fuzzing: 300 mutants of honest tiny files (both layouts, compressed or not) read in a child
    process; each must load or raise InputError, and the child must exit cleanly."""
    rng = np.random.default_rng(16)
    seeds = [build(matlab_vars(NET)), build(keras_vars(NET)), build(matlab_vars(NET), compress=False)]
    paths = []
    for i in range(300):
        raw = bytearray(seeds[i % 3])
        for _ in range(int(rng.integers(1, 6))):
            pos = int(rng.integers(128, len(raw)))
            raw[pos] = int(rng.integers(0, 256)) if rng.random() < 0.7 else raw[pos] ^ 0xFF
        if rng.random() < 0.1:
            raw = raw[: int(rng.integers(128, len(raw)))]
        paths.append(tmp_path / f"f{i}.mat")
        paths[-1].write_bytes(bytes(raw))
    script = (
        "import sys, binexport\nfrom binexport.errors import InputError\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n        binexport.load(p); print('ok')\n"
        "    except InputError as e:\n        assert '\\n' not in str(e), str(e); print('refused')\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", script, *map(str, paths)],
        check=False,
        capture_output=True,
        text=True,
        preexec_fn=_cap,
        env={**os.environ, "PYTHONPATH": pythonpath()},
        timeout=600,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    outcomes = r.stdout.split()
    assert len(outcomes) == 300 and outcomes.count("refused") > 100  # most flips hit data that is checked
    for p in paths[:8]:  # and the CLI's own path, for a few
        c = run_cli("inspect", p, preexec_fn=_cap)
        if c.code != 0:
            assert_refused(c)
