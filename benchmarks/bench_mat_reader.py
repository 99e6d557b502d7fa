"""binexport's own bounded MAT v5 reader (formats/mat/mat5.py) against scipy.io.loadmat, on McDonnell's four files.

Both sides read exactly the variables ``binexport.formats.mat`` needs (the MATLAB layout's eight, or every
``conv2d_N`` / ``batch_normalization_N``), from the same bytes, in interleaved rounds (so load from other jobs
hits both alike); the scipy side also lists the file with ``whosmat`` first, as the old reader did. Reports the
median wall time, the peak of Python-tracked memory (tracemalloc: numpy buffers included) and checks that both
sides return identical arrays.

Usage: python benchmarks/bench_mat_reader.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from pathlib import Path

import numpy as np
import scipy.io

from binexport.formats import mat
from binexport.formats.mat import mat5
from binexport.formats.mat.source import Budget

MCD = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "mcdonnell-1-bit-per-weight" / "TrainedModels"
FILES = {
    "MATLAB CIFAR-10": MCD / "Matlab" / "TrainedWideResNet20-10_CIFAR10_1-bit-per-weight-4MB.mat",
    "MATLAB CIFAR-100": MCD / "Matlab" / "TrainedWideResNet20-10_CIFAR100_1-bit-per-weight-4MB.mat",
    "Keras CIFAR-10": MCD / "Tensorflow.keras" / "CIFAR10_allparams.mat",
    "Keras CIFAR-100": MCD / "Tensorflow.keras" / "CIFAR100_allparams.mat",
}


def wanted(names: list[str]) -> list[str]:
    if set(mat._MATLAB_VARS) <= set(names):
        return list(mat._MATLAB_VARS)
    return [n for n in names if mat._KERAS_CONV.match(n) or mat._KERAS_BN.match(n)]


def ours(path: Path) -> dict:
    data = path.read_bytes()
    f = mat5.MatFile(data, str(path), Budget(str(path), mat.decode_limit(len(data))))
    return {n: f.load(f.vars[n]) for n in wanted(list(f.vars))}


def theirs(path: Path) -> dict:
    names = [n for n, *_ in scipy.io.whosmat(str(path))]
    m = scipy.io.loadmat(str(path), variable_names=wanted(names))
    return {n: list(v.ravel(order="F")) if v.dtype == object else v for n, v in m.items() if not n.startswith("__")}


def same(a: dict, b: dict) -> bool:
    def eq(x, y) -> bool:
        if isinstance(x, list):
            return len(x) == len(y) and all(eq(i, j) for i, j in zip(x, y, strict=True))
        return x.shape == y.shape and np.array_equal(x, y)

    return a.keys() == b.keys() and all(eq(a[k], b[k]) for k in a)


def measure(fn, path: Path) -> tuple[float, int]:
    tracemalloc.start()
    t = time.perf_counter()
    fn(path)
    dt = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return dt, peak


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()
    if not MCD.is_dir():
        raise SystemExit(f"real material absent: {MCD}")
    print(
        "| file | size (B) | binexport mat5 (ms) | scipy.io (ms) | ratio | peak binexport (MiB) | peak scipy (MiB) "
        "| identical |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for label, path in FILES.items():
        times: dict[str, list[float]] = {"ours": [], "scipy": []}
        peaks: dict[str, int] = {}
        for _ in range(a.rounds):  # interleaved, untraced timing; one traced run each for the peak
            for key, fn in (("ours", ours), ("scipy", theirs)):
                t = time.perf_counter()
                fn(path)
                times[key].append(time.perf_counter() - t)
        for key, fn in (("ours", ours), ("scipy", theirs)):
            peaks[key] = measure(fn, path)[1]
        o, s = statistics.median(times["ours"]), statistics.median(times["scipy"])
        print(
            f"| {label} | {path.stat().st_size:,} | {1e3 * o:.0f} | {1e3 * s:.0f} | {o / s:.2f} | "
            f"{peaks['ours'] / 2**20:.1f} | {peaks['scipy'] / 2**20:.1f} | {same(ours(path), theirs(path))} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
