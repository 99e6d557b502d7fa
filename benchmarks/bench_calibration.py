"""Peak memory of int8 calibration from a PNG folder: decode only the images used vs decode the whole folder.

For each count, a folder of 82-byte valid all-black 32x32 PNGs (the smallest the decoder accepts). Each side runs
in a fresh subprocess, interleaved over repeats, and reports what its call adds to the process's peak RSS
(VmHWM after the call minus VmHWM after the imports):

- binexport: ``load_calibration(folder, limit=CALIBRATION_SIZE + HELDOUT_IMAGES)`` (lists the folder, decodes the
  images it uses);
- decode-all: ``load_labelled_folder(folder)`` then the same slice (what calibration did before 0.3.0, and
  the obvious way to write it).

    PYTHONPATH=$PWD python benchmarks/bench_calibration.py --counts 4000,40000 --repeats 2
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import sys
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
from binexport.data.calibration import load_calibration
from binexport.data.png import load_labelled_folder
from binexport.calibrate import CALIBRATION_SIZE, HELDOUT_IMAGES
limit = CALIBRATION_SIZE + HELDOUT_IMAGES
base = hwm()
if sys.argv[2] == "binexport":
    n = len(load_calibration(sys.argv[1], limit=limit).labels)
else:
    images, labels, _ = load_labelled_folder(sys.argv[1])
    n = len(labels[:limit]); kept = images[:limit].copy(); del images
print(n, hwm() - base)
"""


def folder(root: Path, count: int) -> tuple[Path, int]:
    """``count`` labelled 82-byte PNGs under ``root``; their total bytes."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from support.hostile import png

    d = root / f"png{count}"
    d.mkdir()
    data = png()
    for i in range(count):
        (d / f"img{i:06d}_{i % 10}.png").write_bytes(data)
    return d, count * len(data)


def run(path: Path, side: str) -> int:
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), side], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="4000,40000")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    print("| PNGs | PNG bytes | decode-all: added peak RSS | binexport: added peak RSS | ratio |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for count in (int(c) for c in args.counts.split(",")):
            d, nbytes = folder(Path(tmp), count)
            got: dict[str, list[int]] = {"decode-all": [], "binexport": []}
            for _ in range(args.repeats):  # interleaved: load on the shared machine hits both alike
                for side in got:
                    got[side].append(run(d, side))
            old, new = (statistics.median(got[s]) / 1e6 for s in ("decode-all", "binexport"))
            print(f"| {count:,} | {nbytes:,} | {old:,.1f} MB | {new:,.1f} MB | {old / new:.1f}x |")


if __name__ == "__main__":
    main()
