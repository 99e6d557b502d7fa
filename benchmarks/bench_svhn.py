"""SVHN's test_32x32.mat: binexport's streaming reader vs ``scipy.io.loadmat`` (time and peak traced memory).

    python benchmarks/bench_svhn.py [--images N] [--repeat R]

The file is synthetic (no SVHN here): N random images in the official layout (X uint8 32x32x3xN, y Nx1
double), written by scipy, once uncompressed and once compressed. binexport reads every image a chunk of 256
at a time, as verify does; scipy loads the whole file. Times: median of R interleaved rounds; peak: Python's
traced allocations (numpy's included) in one more round each. Prints markdown for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.io

from binexport.data.svhn import FILE, load_svhn


def stream_all(root: Path) -> int:
    ds = load_svhn(root)
    total = 0
    for a in range(0, len(ds.images), 256):
        total += int(ds.images[a : a + 256][:, 0, 0, 0].sum())
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=26032)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = (rng.integers(0, 64, (32, 32, 3, args.images), dtype=np.uint8) * 4).astype(np.uint8)
    y = (rng.integers(1, 11, (args.images, 1))).astype(np.float64)
    print(f"{args.images:,} synthetic images; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs\n")
    print("| file | bytes | reader | s (median) | peak traced MB |\n| --- | ---: | --- | ---: | ---: |")
    for compress in (False, True):
        root = Path(tempfile.mkdtemp())
        scipy.io.savemat(root / FILE, {"X": x, "y": y}, do_compression=compress)
        size = (root / FILE).stat().st_size
        runs: dict[str, Callable[[], object]] = {
            "binexport (streamed, 256 a chunk)": lambda r=root: stream_all(r),  # type: ignore[misc]
            "scipy.io.loadmat (whole)": lambda r=root: scipy.io.loadmat(r / FILE),  # type: ignore[misc]
        }
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.repeat):
            for k, fn in runs.items():
                t = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t)
        for k, fn in runs.items():
            tracemalloc.start()
            fn()
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            kind = "compressed" if compress else "uncompressed"
            print(f"| {kind} | {size:,} | {k} | {statistics.median(times[k]):.2f} | {peak / 2**20:.1f} |")


if __name__ == "__main__":
    main()
