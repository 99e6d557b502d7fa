"""int2 ONNX against float32, 1-bit and int8 ONNX of the real published WRN-20-10: memory first, then speed.

The four files run through ``binexport.bench`` on ONNX Runtime, each in its own process, interleaved round by
round (ratios to the first row, float32). Two calls: ``--batch-size 1`` (its peak RSS is the batch-1 peak) and
``--batch-size 64`` (the batch-64 peak and throughput). Per row:

- resident weights: RSS after loading, minus after an empty session of the same runtime, both after
  ``malloc_trim`` (runtimes/worker.py): what the session holds for the model once loaded;
- peak RSS of the row's process above its runtime's libraries (``model_rss_bytes``) and in all;
- batch-1 median latency and batch-64 throughput, as ratios to float32.

Usage: python benchmarks/bench_int2.py [--seconds 10] [--threads 0] [--files F32 1BIT INT8 INT2]
       (default: exports them from the real packed checkpoint; int8 calibrated on the real CIFAR-100 training part)
Prints markdown tables for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import tempfile
from pathlib import Path

import binexport
from binexport.verbs.bench import cpu_info

REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata"
CKPT = REAL / "seed-checkpoint" / "wrn20-10-1bit-packed.pth.tar"
DATA = REAL / "cifar100-partial"
MIB = 2**20


def export(d: Path) -> list[Path]:
    """float32, 1-bit, int8 and int2 ONNX of the published checkpoint, each validated by ``to-onnx``."""
    files = [d / f"wrn20-10-{w}.onnx" for w in ("float32", "1-bit", "int8", "int2")]
    binexport.export_onnx(CKPT, files[0], weights="float32")
    binexport.export_onnx(CKPT, files[1], weights="1-bit")
    binexport.export_onnx(CKPT, files[2], weights="int8", calibrate="CIFAR100", data_root=DATA)
    binexport.export_onnx(CKPT, files[3], weights="int2")
    return files


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--files", nargs=4, type=Path, default=None)
    a = ap.parse_args()
    name, flags = cpu_info()
    print(
        f"{datetime.date.today()}, {platform.platform()}, {name} ({', '.join(flags)}), binexport "
        f"{binexport.__version__}; ONNX Runtime, threads {a.threads or 'default'}, {a.seconds:g} s per row, "
        "interleaved\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        if a.files is None and not CKPT.is_file():
            raise SystemExit(f"real material absent: {CKPT}")
        files = a.files or export(Path(tmp))
        one = binexport.bench(files, batch_size=1, seconds=a.seconds, device="cpu", threads=a.threads)
        many = binexport.bench(files, batch_size=64, seconds=a.seconds, device="cpu", threads=a.threads)
    print(
        "| file | weights | file MB | resident weights MiB | peak MiB, batch 1 (above runtime) "
        "| peak MiB, batch 64 (above runtime) | batch-1 ms | batch-1 speed | batch-64 img/s | batch-64 speed "
        "| kernels |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r1, r64 in zip(one.rows, many.rows, strict=True):
        held = "-" if r1.weights_rss_bytes is None else f"{r1.weights_rss_bytes / MIB:.1f}"
        print(
            f"| {Path(r1.path).name} | {r1.weights} | {r1.file_bytes / 1e6:.1f} | {held} "
            f"| {r1.peak_rss_bytes / MIB:,.0f} ({r1.model_rss_bytes / MIB:,.0f}) "
            f"| {r64.peak_rss_bytes / MIB:,.0f} ({r64.model_rss_bytes / MIB:,.0f}) "
            f"| {r1.latency_ms_median:.1f} | {r1.latency_ratio:.2f}x | {r64.images_per_s:.1f} "
            f"| {r64.speed_ratio:.2f}x | {r1.kernels or '-'} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
