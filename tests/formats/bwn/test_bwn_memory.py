"""FORMAT.md 10.5: what a read costs in memory is bounded by the decoded size D and the file size.

Each case loads a crafted legal file in a subprocess whose address space is capped (RLIMIT_AS) at what the
interpreter had after importing the reader plus the documented bound, ``PEAK_PER_D * D + PEAK_PER_FILE *
file + SLACK``; a reader that peaks higher dies of MemoryError there, not here. The files are the worst the
format allows: full-precision bf16 convs at ~120 values per payload byte (the shape a hardening review found loading at
6 x D), and one rANS lane per value (the largest per-lane scratch).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import bwn_crafted as crafted
from support.paths import GOLDEN

from binexport.formats.bwn import container as box

#: The bound FORMAT.md 10.5 states (bytes of peak memory over the interpreter's, per byte of D and of file).
PEAK_PER_D = 1.5
PEAK_PER_FILE = 24
SLACK = 64 << 20

_CHILD = """
import json, resource, sys
from binexport.formats import bwn
vm = next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmSize'))
cap = vm + int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
try:
    if sys.argv[2] == 'model':
        m = bwn.read(sys.argv[1])
        n = sum(a.nbytes for a in m.floats.values()) + sum(b.signs.nbytes for b in m.binary.values())
    else:
        n = sum(a.nbytes for a in bwn.read_tensors(sys.argv[1]).values())
except MemoryError:
    print(json.dumps({'memory_error': True}))
    sys.exit(0)
print(json.dumps({'memory_error': False, 'returned': n}))
"""


def _load_capped(path: Path, how: str, budget: int) -> dict[str, object]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), how, str(budget)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


@pytest.mark.parametrize(
    "make,how",
    [
        (lambda: crafted.constant_bf16_model_file(20, 12), "model"),
        (lambda: crafted.one_lane_per_value(1 << 21), "tensors"),
        (lambda: crafted.one_lane_per_kernel(1 << 21), "tensors"),
        (lambda: crafted.constant_model_file(20, 8), "model"),
    ],
    ids=["bf16-120-per-lane", "planes-one-lane-per-value", "rans-one-lane-per-kernel", "1-bit-constant-kernels"],
)
def test_a_read_stays_within_the_documented_bound(tmp_path: Path, make, how: str) -> None:
    path = tmp_path / "m.bwn"
    path.write_bytes(make())
    d = sum(e.decoded_bytes for e in box.Container.open(path).entries)  # within the default limit
    size = path.stat().st_size
    result = _load_capped(path, how, int(PEAK_PER_D * d + PEAK_PER_FILE * size + SLACK))
    assert result["memory_error"] is False
    assert d // 2 <= result["returned"] <= d  # read_tensors returns bf16 as its uint16 bits: half of D


def test_the_cap_is_tight_enough_to_catch_a_reader_that_peaks_at_6_x(tmp_path: Path) -> None:
    """The same load under a third of the bound fails: the subprocess check can fail."""
    path = tmp_path / "m.bwn"
    path.write_bytes(crafted.constant_bf16_model_file(20, 12))
    d = sum(e.decoded_bytes for e in box.Container.open(path).entries)
    assert _load_capped(path, "model", d // 2)["memory_error"] is True


@pytest.mark.parametrize(
    "name", ["tiny-branches.bwn", "tiny-rans-ref.bwn", "fp-f32.bwn", "fp-f16.bwn", "fp-bf16.bwn", "fp-specials.bwn"]
)
def test_tiny_batches_and_gathers_decode_the_same(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """The batch and gather sizes bound memory only; cut to a few streams, values and symbols (so every
    segment takes many gathers, every file many batches) the decoded arrays are the same bit for bit."""
    from binexport.formats import bwn
    from binexport.formats.bwn import rans

    path = GOLDEN / name
    want = bwn.read_tensors(path)
    monkeypatch.setattr(rans, "MAX_BATCH_JOBS", 2)
    monkeypatch.setattr(rans, "MAX_BATCH_VALUES", 300)
    monkeypatch.setattr(rans, "CHUNK_VALUES", 5)
    got = bwn.read_tensors(path)
    assert list(got) == list(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].tobytes() == want[k].tobytes(), k


@pytest.mark.slow  # a WRN-20-4 (~12 s); test_many_tensors_decode_together_in_batches covers the batching
def test_a_full_size_float_model_decodes_through_many_gathers(tmp_path: Path) -> None:
    """A WRN-20-4 in float32 and bfloat16 (several batches, segments of more rounds than one gather holds) reads
    back bit for bit: the case the goldens, a few lanes each, are too small to reach."""
    from binexport.data.synth import make_arch, random_state
    from binexport.formats import bwn
    from binexport.model import Model
    from binexport.precision import round_weights

    arch = make_arch(20, 4, 100)
    model = Model(arch, False, random_state(arch, 0))
    for weights in ("float32", "bfloat16"):
        path = tmp_path / f"{weights}.bwn"
        path.write_bytes(bwn.write(model, weights=weights))
        assert {e.encoding for e in box.Container.open(path).entries} >= {"planes"}
        got, want = bwn.read(path), round_weights(model, weights)
        for k, v in want.floats.items():
            assert np.asarray(got.floats[k]).tobytes() == np.asarray(v).tobytes(), k
