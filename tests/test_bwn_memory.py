"""FORMAT.md 10.5: what a read costs in memory is bounded by the decoded size D and the file size.

Each case loads a crafted legal file in a subprocess whose address space is capped (RLIMIT_AS) at what the
interpreter had after importing the reader plus the documented bound, ``PEAK_PER_D * D + PEAK_PER_FILE *
file + SLACK``; a reader that peaks higher dies of MemoryError there, not here. The files are the worst the
format allows: full-precision bf16 convs at ~120 values per payload byte (the shape issue 16 found loading at
6 x D), and one rANS lane per value (the largest per-lane scratch).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import bwn_crafted as crafted
import pytest

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
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path), how, str(budget)], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


@pytest.mark.parametrize("make,how", [
    (lambda: crafted.constant_bf16_model_file(20, 12), "model"),
    (lambda: crafted.one_lane_per_value(1 << 21), "tensors"),
    (lambda: crafted.one_lane_per_kernel(1 << 21), "tensors"),
    (lambda: crafted.constant_model_file(20, 8), "model"),
], ids=["bf16-120-per-lane", "planes-one-lane-per-value", "rans-one-lane-per-kernel", "1-bit-constant-kernels"])
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
